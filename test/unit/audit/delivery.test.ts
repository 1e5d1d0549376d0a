import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { resourceFromAttributes } from '@opentelemetry/resources'
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace'
import { AuditDelivery, type DeliveryOptions } from '../../../src/audit/delivery.ts'
import { FileSink } from '../../../src/audit/file-sink.ts'
import { recordToSpan } from '../../../src/audit/record.ts'
import { Spool } from '../../../src/audit/spool.ts'
import { silentLogger } from '../../../src/log.ts'
import { tempDir } from './fixtures.ts'

const SCOPE = { name: 'modelgate', version: '0.1.0' }
const resource = resourceFromAttributes({ 'service.name': 'modelgate' })

function span(i: number): ReadableSpan {
  return recordToSpan(
    { traceId: 'a'.repeat(32), spanId: i.toString(16).padStart(16, '0'), name: 'chat m', kind: 1, start: String(1000 + i), end: String(2000 + i), status: { code: 0 }, attributes: { 'modelgate.request.id': `req-${i}` } },
    resource,
    SCOPE,
  )
}

const idOf = (s: ReadableSpan) => s.attributes['modelgate.request.id'] as string

/** An exporter the test switches between answering, failing and never answering. */
class FakeExporter implements SpanExporter {
  mode: 'ok' | 'fail' | 'hang' = 'ok'
  readonly batches: string[][] = []
  attempts = 0
  readonly held: ((r: ExportResult) => void)[] = []
  shutdowns = 0
  export(spans: ReadableSpan[], cb: (r: ExportResult) => void): void {
    this.attempts++
    if (this.mode === 'hang') {
      this.held.push(cb)
      return
    }
    if (this.mode === 'fail') return cb({ code: ExportResultCode.FAILED, error: new Error('collector down') })
    this.batches.push(spans.map(idOf))
    cb({ code: ExportResultCode.SUCCESS })
  }
  get delivered(): string[] {
    return this.batches.flat()
  }
  async shutdown(): Promise<void> {
    this.shutdowns++
  }
}

function setup(t: Test, over: Partial<DeliveryOptions> & { maxBytes?: number; hardLimitBytes?: number; dir?: string } = {}) {
  const dir = over.dir ?? tempDir(t)
  const exporter = (over.exporter as FakeExporter | undefined) ?? new FakeExporter()
  const spool = new Spool({
    dir,
    maxBytes: over.maxBytes ?? 1024 * 1024,
    hardLimitBytes: over.hardLimitBytes ?? 2 * 1024 * 1024,
    segmentRecords: over.maxBatch ?? 4,
    header: { spool: 1, resource: { 'service.name': 'modelgate' }, scope: SCOPE },
    logger: silentLogger,
  })
  const delivery = new AuditDelivery({
    exporter,
    spool,
    file: over.file,
    resource,
    scope: SCOPE,
    delayMs: over.delayMs ?? 5,
    maxBatch: over.maxBatch ?? 4,
    maxQueue: over.maxQueue ?? 100,
    retryInitialMs: over.retryInitialMs ?? 20,
    retryMaxMs: over.retryMaxMs ?? 40,
    exportTimeoutMs: over.exportTimeoutMs ?? 1000,
    logger: silentLogger,
    ...(over.onDropped ? { onDropped: over.onDropped } : {}),
    ...(over.onExportFailure ? { onExportFailure: over.onExportFailure } : {}),
  })
  t.teardown(() => delivery.shutdown())
  return { dir, exporter, spool, delivery }
}

async function until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

t.test('spans go out in batches of at most maxBatch, in order', async (t) => {
  const { exporter, delivery } = setup(t, { maxBatch: 4 })
  for (let i = 1; i <= 10; i++) delivery.onEnd(span(i))
  await delivery.forceFlush()
  t.same(exporter.batches.map((b) => b.length), [4, 4, 2])
  t.same(exporter.delivered, Array.from({ length: 10 }, (_, i) => `req-${i + 1}`))
  t.equal(delivery.stats().exported, 10)
})

t.test('a batch waits at most the schedule delay', async (t) => {
  const { exporter, delivery } = setup(t, { delayMs: 20, maxBatch: 100 })
  delivery.onEnd(span(1))
  t.same(exporter.delivered, [])
  await until(() => exporter.delivered.length === 1, 'the delayed batch')
  t.pass('sent without a flush')
})

t.test('while the collector is down every span is spooled, and all arrive once it is back', async (t) => {
  let failures = 0
  const { exporter, delivery, spool } = setup(t, { retryInitialMs: 30, retryMaxMs: 60, onExportFailure: () => failures++ })
  exporter.mode = 'fail'
  for (let i = 1; i <= 9; i++) delivery.onEnd(span(i))
  await delivery.forceFlush()
  t.ok(delivery.stats().collectorDown)
  t.equal(exporter.delivered.length, 0)
  t.equal(delivery.stats().spooled, 9)
  t.ok(spool.bytes > 0)
  // More requests while it is down join the spool.
  for (let i = 10; i <= 12; i++) delivery.onEnd(span(i))
  await delivery.forceFlush()
  t.equal(delivery.stats().spooled, 12)
  exporter.mode = 'ok'
  await until(() => exporter.delivered.length === 12, 'the spool to drain')
  t.same([...exporter.delivered].sort((a, b) => Number(a.slice(4)) - Number(b.slice(4))), Array.from({ length: 12 }, (_, i) => `req-${i + 1}`))
  t.ok(spool.empty)
  t.equal(spool.bytes, 0)
  t.notOk(delivery.stats().collectorDown)
  t.ok(failures >= 1)
})

t.test('retries back off exponentially up to the maximum', async (t) => {
  const { exporter, delivery } = setup(t, { retryInitialMs: 40, retryMaxMs: 80 })
  exporter.mode = 'fail'
  delivery.onEnd(span(1))
  await delivery.forceFlush()
  const before = exporter.attempts
  await sleep(250)
  const retries = exporter.attempts - before
  // 40, 80, 80 … ms apart: about three retries in 250 ms, never one per tick.
  t.ok(retries >= 2 && retries <= 5, `${retries} retries`)
})

t.test('a slow collector costs disk, not memory: the queue spills past maxQueue', async (t) => {
  const { exporter, delivery } = setup(t, { maxBatch: 2, maxQueue: 4, exportTimeoutMs: 200 })
  exporter.mode = 'hang'
  for (let i = 1; i <= 2; i++) delivery.onEnd(span(i))
  await until(() => exporter.held.length === 1, 'the first export to hang')
  for (let i = 3; i <= 12; i++) delivery.onEnd(span(i))
  await sleep(20)
  const s = delivery.stats()
  t.ok(s.queued <= 4, `queued ${s.queued}`)
  t.ok(s.spooled >= 6, `spooled ${s.spooled}`)
  // The hung export is given up after its timeout; then everything is sent.
  exporter.mode = 'ok'
  await until(() => new Set(exporter.delivered).size === 12, 'every span', 8000)
  t.pass('all 12 arrived')
})

t.test('an exporter that never answers counts as failed after its timeout', async (t) => {
  const { exporter, delivery } = setup(t, { exportTimeoutMs: 50 })
  exporter.mode = 'hang'
  delivery.onEnd(span(1))
  await delivery.forceFlush()
  t.ok(delivery.stats().collectorDown)
  t.equal(delivery.stats().spooled, 1)
})

t.test('accepting() turns false when the spool is full', async (t) => {
  const { exporter, delivery } = setup(t, { maxBytes: 1500, hardLimitBytes: 3000 })
  exporter.mode = 'fail'
  t.ok(delivery.accepting())
  for (let i = 1; i <= 10; i++) delivery.onEnd(span(i))
  await delivery.forceFlush()
  t.notOk(delivery.accepting())
})

t.test('spans past the hard limit are dropped and counted', async (t) => {
  const dropped: number[] = []
  const { exporter, delivery } = setup(t, { maxBytes: 1200, hardLimitBytes: 1200, onDropped: (n) => dropped.push(n) })
  exporter.mode = 'fail'
  for (let i = 1; i <= 20; i++) delivery.onEnd(span(i))
  await delivery.forceFlush()
  const s = delivery.stats()
  t.ok(s.dropped > 0)
  t.equal(s.spooled + s.dropped, 20)
  t.equal(dropped.reduce((a, b) => a + b, 0), s.dropped)
})

t.test('shutdown while the collector is down keeps every span for the next process', async (t) => {
  const dir = tempDir(t)
  const first = setup(t, { dir })
  first.exporter.mode = 'fail'
  for (let i = 1; i <= 5; i++) first.delivery.onEnd(span(i))
  await first.delivery.shutdown()
  t.equal(first.exporter.shutdowns, 1)
  t.equal(first.delivery.stats().spooled, 5)
  // A spool left behind is sent as soon as the next process starts.
  const second = setup(t, { dir })
  await until(() => second.exporter.delivered.length === 5, 'the earlier spool')
  t.same(second.exporter.delivered, ['req-1', 'req-2', 'req-3', 'req-4', 'req-5'])
})

t.test('shutdown with a reachable collector sends what is queued', async (t) => {
  const { exporter, delivery, spool } = setup(t, { delayMs: 10000 })
  for (let i = 1; i <= 3; i++) delivery.onEnd(span(i))
  await delivery.shutdown()
  t.same(exporter.delivered, ['req-1', 'req-2', 'req-3'])
  t.ok(spool.empty)
})

t.test('every span also goes to the file sink, in order', async (t) => {
  const dir = tempDir(t)
  const file = new FileSink(join(dir, 'audit.jsonl'), silentLogger)
  const { delivery } = setup(t, { file })
  for (let i = 1; i <= 3; i++) delivery.onEnd(span(i))
  await delivery.shutdown()
  const lines = readFileSync(join(dir, 'audit.jsonl'), 'utf8').trim().split('\n')
  t.same(lines.map((l) => JSON.parse(l).attributes['modelgate.request.id']), ['req-1', 'req-2', 'req-3'])
})

t.test('without an exporter only the file sink is used', async (t) => {
  const dir = tempDir(t)
  const file = new FileSink(join(dir, 'sub', 'audit.jsonl'), silentLogger)
  const delivery = new AuditDelivery({ exporter: undefined, spool: undefined, file, resource, scope: SCOPE, delayMs: 5, maxBatch: 4, maxQueue: 10, retryInitialMs: 10, retryMaxMs: 10, exportTimeoutMs: 100, logger: silentLogger })
  delivery.onEnd(span(1))
  await delivery.forceFlush()
  t.equal(readFileSync(join(dir, 'sub', 'audit.jsonl'), 'utf8').trim().split('\n').length, 1)
  t.ok(delivery.accepting())
  await delivery.shutdown()
  t.notOk(file.available, 'closed')
  t.throws(() => new AuditDelivery({ exporter: new FakeExporter(), spool: undefined, file: undefined, resource, scope: SCOPE, delayMs: 5, maxBatch: 4, maxQueue: 10, retryInitialMs: 10, retryMaxMs: 10, exportTimeoutMs: 100, logger: silentLogger }), {
    message: 'an OTLP exporter needs a spool',
  })
})

t.test('a file that cannot be written makes the trail unavailable', async (t) => {
  const dir = tempDir(t)
  // A directory where the file should be: opening it fails.
  const file = new FileSink(dir, silentLogger)
  await until(() => !file.available, 'the open to fail')
  t.notOk(file.write({ traceId: 'a', spanId: 'b', name: 'x', kind: 0, start: '1', end: '2', status: { code: 0 }, attributes: {} }))
  t.equal(file.dropped, 1)
  await file.close()
})
