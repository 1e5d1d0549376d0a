import t from 'tap'
import { appendFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { SpanRecord } from '../../../src/audit/record.ts'
import { Spool, SpoolLockedError, type SpoolOptions } from '../../../src/audit/spool.ts'
import { silentLogger } from '../../../src/log.ts'
import { memoryLogger, tempDir } from './fixtures.ts'

function rec(i: number, pad = 0): SpanRecord {
  return {
    traceId: 'a'.repeat(32),
    spanId: i.toString(16).padStart(16, '0'),
    name: 'chat m',
    kind: 1,
    start: String(1000 + i),
    end: String(2000 + i),
    status: { code: 0 },
    attributes: { 'modelgate.request.id': `req-${i}`, pad: 'x'.repeat(pad) },
  }
}

function options(dir: string, over: Partial<SpoolOptions> = {}): SpoolOptions {
  return {
    dir,
    maxBytes: 1024 * 1024,
    hardLimitBytes: 2 * 1024 * 1024,
    segmentRecords: 3,
    header: { spool: 1, resource: { 'service.name': 'modelgate' }, scope: { name: 'modelgate', version: '0.1.0' } },
    logger: silentLogger,
    ...over,
  }
}

t.test('records come back oldest first, one segment per export batch', async (t) => {
  const dir = tempDir(t)
  const spool = new Spool(options(dir))
  t.teardown(() => spool.close())
  t.ok(spool.empty)
  t.equal(spool.append([1, 2, 3, 4, 5, 6, 7].map((i) => rec(i))), 7)
  t.equal(spool.segments, 3)
  const seen: string[] = []
  for (let i = 0; i < 10 && !spool.empty; i++) {
    const seg = spool.oldest()!
    t.same(seg.header?.resource, { 'service.name': 'modelgate' })
    seen.push(...seg.records.map((r) => r.attributes['modelgate.request.id'] as string))
    spool.remove(seg.name)
  }
  t.same(seen, ['req-1', 'req-2', 'req-3', 'req-4', 'req-5', 'req-6', 'req-7'])
  t.equal(spool.bytes, 0)
  t.same(readdirSync(dir).filter((n) => n.endsWith('.jsonl')), [])
})

t.test('the size counts every byte on disk and the spool is full at maxBytes', async (t) => {
  const dir = tempDir(t)
  const spool = new Spool(options(dir, { maxBytes: 2000, hardLimitBytes: 4000, segmentRecords: 100 }))
  t.teardown(() => spool.close())
  spool.append([rec(1, 500)])
  t.notOk(spool.full)
  spool.append([rec(2, 500), rec(3, 500)])
  t.ok(spool.full)
  const onDisk = readdirSync(dir)
    .filter((n) => n.endsWith('.jsonl'))
    .reduce((n, f) => n + readFileSync(join(dir, f)).length, 0)
  t.equal(spool.bytes, onDisk)
})

t.test('nothing is written past the hard limit', async (t) => {
  const dir = tempDir(t)
  const spool = new Spool(options(dir, { maxBytes: 1000, hardLimitBytes: 1500, segmentRecords: 100 }))
  t.teardown(() => spool.close())
  const written = spool.append([1, 2, 3, 4, 5, 6].map((i) => rec(i, 300)))
  t.ok(written >= 2 && written < 6, `wrote ${written}`)
  t.ok(spool.bytes <= 1500)
  t.equal(spool.append([rec(9, 300)]), 0)
})

t.test('a new process picks up the segments an earlier one left', async (t) => {
  const dir = tempDir(t)
  const first = new Spool(options(dir))
  first.append([rec(1), rec(2), rec(3), rec(4)])
  first.close()
  const second = new Spool(options(dir))
  t.teardown(() => second.close())
  t.equal(second.segments, 2)
  t.ok(second.bytes > 0)
  second.append([rec(5)])
  const ids: string[] = []
  for (let i = 0; i < 5 && !second.empty; i++) {
    const seg = second.oldest()!
    ids.push(...seg.records.map((r) => r.attributes['modelgate.request.id'] as string))
    second.remove(seg.name)
  }
  t.same(ids, ['req-1', 'req-2', 'req-3', 'req-4', 'req-5'])
})

t.test('a torn line from a crash is skipped and counted', async (t) => {
  const dir = tempDir(t)
  const spool = new Spool(options(dir))
  spool.append([rec(1), rec(2)])
  spool.close()
  const seg = readdirSync(dir).find((n) => n.endsWith('.jsonl'))!
  appendFileSync(join(dir, seg), '{"traceId":"aaaa","spa')
  const again = new Spool(options(dir))
  t.teardown(() => again.close())
  const s = again.oldest()!
  t.equal(s.records.length, 2)
  t.equal(s.unreadable, 1)
})

t.test('one process at a time owns a spool directory', async (t) => {
  const dir = tempDir(t)
  const a = new Spool(options(dir))
  t.throws(() => new Spool(options(dir)), SpoolLockedError, 'a second spool in the same process')
  a.close()
  const b = new Spool(options(dir))
  b.close()
  // A lock left by a live process (pid 1 always exists) is respected; a dead pid's lock is taken over.
  writeFileSync(join(dir, 'spool.lock'), '1')
  t.throws(() => new Spool(options(dir)), { message: /in use by process 1/ })
  writeFileSync(join(dir, 'spool.lock'), '999999999')
  const c = new Spool(options(dir))
  t.equal(readFileSync(join(dir, 'spool.lock'), 'utf8'), String(process.pid))
  c.close()
})

t.test('an empty open segment leaves no file behind', async (t) => {
  const dir = tempDir(t)
  const spool = new Spool(options(dir))
  spool.append([rec(1)])
  spool.remove(spool.oldest()!.name)
  spool.close()
  t.same(readdirSync(dir), [])
  const log = memoryLogger()
  const again = new Spool(options(dir, { logger: log }))
  t.ok(again.empty)
  again.close()
})

t.test('appending to a closed spool fails loudly', async (t) => {
  const dir = tempDir(t)
  const spool = new Spool(options(dir))
  spool.close()
  t.throws(() => spool.append([rec(1)]), { message: 'audit spool is closed' })
})
