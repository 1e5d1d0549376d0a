import t from 'tap'
import { createHash } from 'node:crypto'
import { GENESIS_HASH, HashChain, recordHash, verifyRecords } from '../../../src/audit/chain.ts'
import { MG_AUDIT_CHAIN_ID, MG_AUDIT_FINAL, MG_AUDIT_HASH, MG_AUDIT_PREV_HASH, MG_AUDIT_SEQ, SPAN_CHAIN_END } from '../../../src/audit/attributes.ts'
import { recordsFromOtlpJson, type RecordValue, type SpanRecord } from '../../../src/audit/record.ts'

/** A chain of `n` request records plus, optionally, its end record. */
function chainOf(n: number, opts: { end?: boolean; id?: string } = {}): SpanRecord[] {
  const chain = new HashChain(opts.id ?? 'chain-a')
  const out: SpanRecord[] = []
  for (let i = 1; i <= n + (opts.end ? 1 : 0); i++) {
    const isEnd = opts.end && i === n + 1
    const attributes: Record<string, RecordValue> = isEnd
      ? { [MG_AUDIT_FINAL]: true }
      : { 'modelgate.request.id': `req-${i}`, 'modelgate.outcome': i % 3 === 0 ? 'denied' : 'allowed', 'modelgate.duration_ms': i + 0.125, 'modelgate.data.classes': ['pii.email'], 'gen_ai.usage.input_tokens': 10 * i }
    const id = { traceId: i.toString(16).padStart(32, 'a'), spanId: i.toString(16).padStart(16, 'b'), start: `${1_700_000_000_000_000_000n + BigInt(i) * 1000n}`, end: `${1_700_000_000_000_000_000n + BigInt(i) * 1000n + 500n}` }
    chain.append(id, attributes)
    out.push({ ...id, name: isEnd ? SPAN_CHAIN_END : 'chat gpt-4o', kind: 1, status: { code: 0 }, attributes })
  }
  return out
}

/** The record as an OTLP/JSON exporter writes it (ints as strings, typed values). */
function asOtlpJson(records: SpanRecord[]): unknown {
  const value = (v: RecordValue): unknown => {
    if (Array.isArray(v)) return { arrayValue: { values: (v as RecordValue[]).map(value) } }
    if (typeof v === 'string') return { stringValue: v }
    if (typeof v === 'boolean') return { boolValue: v }
    return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v }
  }
  return {
    resourceSpans: [
      {
        resource: { attributes: [] },
        scopeSpans: [
          {
            scope: { name: 'modelgate' },
            spans: records.map((r) => ({
              traceId: r.traceId,
              spanId: r.spanId,
              name: r.name,
              kind: r.kind + 1,
              startTimeUnixNano: r.start,
              endTimeUnixNano: r.end,
              attributes: Object.entries(r.attributes).map(([key, v]) => ({ key, value: value(v) })),
              status: {},
            })),
          },
        ],
      },
    ],
  }
}

t.test('each appended record links to the previous one, starting from the genesis hash', async (t) => {
  const records = chainOf(3)
  t.equal(records[0]!.attributes[MG_AUDIT_SEQ], 1)
  t.equal(records[0]!.attributes[MG_AUDIT_PREV_HASH], GENESIS_HASH)
  t.equal(records[1]!.attributes[MG_AUDIT_PREV_HASH], records[0]!.attributes[MG_AUDIT_HASH])
  t.equal(records[2]!.attributes[MG_AUDIT_PREV_HASH], records[1]!.attributes[MG_AUDIT_HASH])
  t.match(records[2]!.attributes[MG_AUDIT_HASH], /^[0-9a-f]{64}$/)
  t.equal(records[2]!.attributes[MG_AUDIT_CHAIN_ID], 'chain-a')
})

t.test('the hash ignores attribute order and its own attribute, and covers everything else', async (t) => {
  const id = { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), start: '1', end: '2' }
  const h = recordHash(id, { x: 1, y: 'two', z: [true] })
  t.equal(recordHash(id, { z: [true], y: 'two', x: 1 }), h, 'order')
  t.equal(recordHash(id, { z: [true], y: 'two', x: 1, [MG_AUDIT_HASH]: 'anything' }), h, 'own hash excluded')
  t.not(recordHash(id, { x: 1, y: 'two', z: [false] }), h, 'a value')
  t.not(recordHash(id, { x: 1, y: 'two' }), h, 'a removed attribute')
  t.not(recordHash({ ...id, spanId: 'c'.repeat(16) }, { x: 1, y: 'two', z: [true] }), h, 'the span id')
  t.not(recordHash({ ...id, start: '0' }, { x: 1, y: 'two', z: [true] }), h, 'the start time')
  t.not(recordHash({ ...id, end: '3' }, { x: 1, y: 'two', z: [true] }), h, 'the end time')
})

t.test('the hash is SHA-256 over the documented canonical JSON array', async (t) => {
  const id = { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), start: '10', end: '20' }
  const attributes = { 'z.last': [1, 2.5], 'a.first': 'x "quoted" \u00e9', 'm.flag': false, [MG_AUDIT_HASH]: 'ignored' }
  const canonical = JSON.stringify(['modelgate-audit-v1', id.traceId, id.spanId, id.start, id.end, [['a.first', attributes['a.first']], ['m.flag', false], ['z.last', [1, 2.5]]]])
  t.equal(recordHash(id, attributes), createHash('sha256').update(canonical).digest('hex'))
})

t.test('the same hash comes out of the JSON record and an OTLP/JSON export', async (t) => {
  const records = chainOf(4, { end: true })
  const roundTripped = JSON.parse(JSON.stringify(records)) as SpanRecord[]
  t.same(verifyRecords(roundTripped).problems, [], 'JSON lines')
  const fromOtlp = recordsFromOtlpJson(JSON.parse(JSON.stringify(asOtlpJson(records))))
  t.equal(fromOtlp.length, records.length)
  const result = verifyRecords(fromOtlp)
  t.same(result.problems, [], 'OTLP/JSON')
  t.same(result.chains, [{ chainId: 'chain-a', records: 5, firstSeq: 1, lastSeq: 5, ended: true, head: records[4]!.attributes[MG_AUDIT_HASH] }])
})

t.test('verification finds deleted, edited, reordered and conflicting records', async (t) => {
  const cases: { name: string; mutate: (r: SpanRecord[]) => SpanRecord[]; opts?: { partial?: boolean }; problems: { kind: string; from: number; to: number; message: string }[] }[] = [
    { name: 'an intact chain', mutate: (r) => r, problems: [] },
    {
      name: 'a record deleted from the middle',
      mutate: (r) => r.filter((_, i) => i !== 2),
      problems: [{ kind: 'missing', from: 3, to: 3, message: 'seq 3..3: 1 record missing (deleted or never delivered)' }],
    },
    {
      name: 'three records deleted from the middle',
      mutate: (r) => r.filter((_, i) => i < 1 || i > 3),
      problems: [{ kind: 'missing', from: 2, to: 4, message: 'seq 2..4: 3 records missing (deleted or never delivered)' }],
    },
    {
      name: 'the first records deleted',
      mutate: (r) => r.slice(2),
      problems: [{ kind: 'missing-head', from: 1, to: 2, message: 'seq 1..2: 2 records missing before the first one found' }],
    },
    { name: 'the first records absent from a partial export', mutate: (r) => r.slice(2), opts: { partial: true }, problems: [] },
    {
      name: 'an edited attribute',
      mutate: (r) => r.map((x, i) => (i === 1 ? { ...x, attributes: { ...x.attributes, 'modelgate.outcome': 'allowed', 'modelgate.data.classes': [] } } : x)),
      problems: [{ kind: 'edited', from: 2, to: 2, message: 'seq 2: content does not match its hash (record edited)' }],
    },
    {
      name: 'an attribute removed',
      mutate: (r) => r.map((x, i) => (i === 3 ? { ...x, attributes: Object.fromEntries(Object.entries(x.attributes).filter(([k]) => k !== 'gen_ai.usage.input_tokens')) } : x)),
      problems: [{ kind: 'edited', from: 4, to: 4, message: 'seq 4: content does not match its hash (record edited)' }],
    },
    {
      name: 'an edited time',
      mutate: (r) => r.map((x, i) => (i === 0 ? { ...x, start: '1600000000000000000' } : x)),
      problems: [{ kind: 'edited', from: 1, to: 1, message: 'seq 1: content does not match its hash (record edited)' }],
    },
    {
      name: 'an edit with its hash recomputed (the next link breaks)',
      mutate: (r) =>
        r.map((x, i) => {
          if (i !== 1) return x
          const attributes: Record<string, RecordValue> = { ...x.attributes, 'modelgate.outcome': 'denied' }
          attributes[MG_AUDIT_HASH] = recordHash(x, attributes)
          return { ...x, attributes }
        }),
      problems: [{ kind: 'broken-link', from: 3, to: 3, message: 'seq 3: prev_hash does not match the hash of seq 2 (record edited or replaced)' }],
    },
    { name: 'a record delivered twice', mutate: (r) => [...r, r[2]!], problems: [] },
    {
      name: 'two different records at one position',
      mutate: (r) => [...r, { ...r[2]!, spanId: 'f'.repeat(16) }],
      problems: [
        { kind: 'conflict', from: 3, to: 3, message: 'seq 3: 2 different records claim this position' },
      ],
    },
    { name: 'records in any order', mutate: (r) => [...r].reverse(), problems: [] },
  ]
  for (const c of cases) {
    const result = verifyRecords(c.mutate(chainOf(6, { end: true })), c.opts)
    t.same(
      result.problems.map((p) => ({ kind: p.kind, from: p.from, to: p.to, message: p.message })),
      c.problems,
      c.name,
    )
  }
})

t.test('a duplicate is counted, not reported', async (t) => {
  const r = chainOf(3)
  const result = verifyRecords([...r, r[0]!, r[1]!])
  t.equal(result.duplicates, 2)
  t.same(result.problems, [])
})

t.test('records after the chain-end record are reported', async (t) => {
  const ended = chainOf(2, { end: true })
  const more = chainOf(4).slice(3)
  const result = verifyRecords([...ended, ...more])
  t.same(result.problems.map((p) => p.message), [
    'seq 4: prev_hash does not match the hash of seq 3 (record edited or replaced)',
    'seq 4..4: records follow the chain-end record',
  ])
})

t.test('a chain without its end record is open, not broken', async (t) => {
  const result = verifyRecords(chainOf(3))
  t.same(result.problems, [])
  t.equal(result.chains[0]!.ended, false)
})

t.test('records without chain attributes are counted apart', async (t) => {
  const child: SpanRecord = { traceId: 'a'.repeat(32), spanId: 'c'.repeat(16), parentSpanId: 'b'.repeat(16), name: 'modelgate.stage policy', kind: 0, start: '1', end: '2', status: { code: 0 }, attributes: { 'modelgate.stage.name': 'policy' } }
  const result = verifyRecords([...chainOf(2), child])
  t.equal(result.unchained, 1)
  t.same(result.problems, [])
})

t.test('several chains (one per process) are verified independently', async (t) => {
  const a = chainOf(3, { id: 'chain-a', end: true })
  const b = chainOf(3, { id: 'chain-b' }).filter((_, i) => i !== 1)
  const result = verifyRecords([...b, ...a])
  t.same(result.chains.map((c) => [c.chainId, c.records, c.ended]), [
    ['chain-a', 4, true],
    ['chain-b', 2, false],
  ])
  t.same(result.problems.map((p) => [p.chainId, p.kind]), [['chain-b', 'missing']])
})
