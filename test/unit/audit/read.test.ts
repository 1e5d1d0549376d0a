import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expandSources, readRecords } from '../../../src/audit/read.ts'
import type { SpanRecord } from '../../../src/audit/record.ts'
import { tempDir } from './fixtures.ts'

const rec = (i: number): SpanRecord => ({ traceId: 'a'.repeat(32), spanId: String(i).padStart(16, '0'), name: 'x', kind: 1, start: '1', end: '2', status: { code: 0 }, attributes: { i } })

t.test('directories expand to their data files, sorted, not recursively', async (t) => {
  const dir = tempDir(t)
  for (const n of ['b.jsonl', 'a.json', 'c.ndjson', 'd.jsonl.gz', 'notes.txt', 'spool.lock']) writeFileSync(join(dir, n), '')
  mkdirSync(join(dir, 'sub'))
  writeFileSync(join(dir, 'sub', 'e.jsonl'), '')
  const { files, problems } = expandSources([dir])
  t.same(files.map((f) => f.slice(dir.length + 1)), ['a.json', 'b.jsonl', 'c.ndjson', 'd.jsonl.gz'])
  t.same(problems, [])
  const empty = tempDir(t)
  t.same(expandSources([empty]).problems, [{ file: empty, line: 0, message: 'directory holds no .jsonl/.json files' }])
})

t.test('records are streamed with their origin; other lines are reported by line number', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'mixed.jsonl')
  writeFileSync(
    file,
    [
      JSON.stringify(rec(1)),
      '',
      JSON.stringify({ spool: 1, resource: {}, scope: { name: 'modelgate' } }),
      JSON.stringify({ resourceMetrics: [] }),
      JSON.stringify([rec(2), rec(3)]),
      JSON.stringify({ hello: 'world' }),
      'not json',
      JSON.stringify(rec(4)),
    ].join('\n'),
  )
  const seen: [unknown, number][] = []
  const summary = await readRecords([file], (r, o) => seen.push([r.attributes.i, o.line]))
  t.same(seen, [
    [1, 1],
    [2, 5],
    [3, 5],
    [4, 8],
  ])
  t.equal(summary.records, 4)
  t.same(summary.problems, [
    { file, line: 6, message: 'not an audit record or OTLP/JSON trace export' },
    { file, line: 7, message: 'not JSON' },
  ])
})

t.test('a file that is neither JSON lines nor a JSON document is reported once', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'broken.json')
  writeFileSync(file, '{\n  "resourceSpans": [\n')
  const summary = await readRecords([file], () => {})
  t.equal(summary.problems.length, 1)
  t.match(summary.problems[0]!.message, /^neither JSON lines nor one JSON document/)
})
