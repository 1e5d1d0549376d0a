import t from 'tap'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api'
import { TraceState } from '@opentelemetry/core'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { AlwaysOnSampler, InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace'
import { cleanValue, hrTimeToNanos, nanosToHrTime, otlpId, recordsFromOtlpJson, recordToSpan, spanToRecord, isSpanRecord } from '../../../src/audit/record.ts'

t.test('an ended span becomes a JSON record and back without loss', async (t) => {
  const exporter = new InMemorySpanExporter()
  const provider = new TracerProvider({ sampler: new AlwaysOnSampler(), spanProcessors: [new SimpleSpanProcessor({ exporter })], resource: resourceFromAttributes({ 'service.name': 'x' }) })
  const tracer = provider.getTracer('test')
  const parent = trace.setSpanContext(ROOT_CONTEXT, { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1, isRemote: true, traceState: new TraceState('vendor=v1') })
  const span = tracer.startSpan('chat m', { kind: SpanKind.SERVER, startTime: [1700000000, 123456789] }, parent)
  span.setAttributes({ s: 'x', i: 3, d: 1.5, b: true, arr: ['a', 'b'] })
  span.setStatus({ code: SpanStatusCode.ERROR, message: 'MG_INTERNAL' })
  span.end([1700000001, 5])
  await provider.forceFlush()
  const [ended] = exporter.getFinishedSpans()
  const r = spanToRecord(ended!)
  t.same(r, {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: ended!.spanContext().spanId,
    parentSpanId: '00f067aa0ba902b7',
    remoteParent: true,
    traceState: 'vendor=v1',
    name: 'chat m',
    kind: SpanKind.SERVER,
    start: '1700000000123456789',
    end: '1700000001000000005',
    status: { code: SpanStatusCode.ERROR, message: 'MG_INTERNAL' },
    attributes: { s: 'x', i: 3, d: 1.5, b: true, arr: ['a', 'b'] },
  })
  t.ok(isSpanRecord(JSON.parse(JSON.stringify(r))))
  const back = recordToSpan(JSON.parse(JSON.stringify(r)), ended!.resource, ended!.instrumentationScope)
  t.same(spanToRecord(back), r, 'rebuilt span gives the same record')
  t.same(back.duration, [0, 876543216], 'duration')
  t.equal(back.parentSpanContext?.isRemote, true)
  t.equal(back.spanContext().traceState?.get('vendor'), 'v1')
  await provider.shutdown()
})

t.test('nanosecond times convert exactly', async (t) => {
  t.equal(hrTimeToNanos([1700000000, 999999999]), '1700000000999999999')
  t.same(nanosToHrTime('1700000000000000001'), [1700000000, 1])
})

t.test('only values OpenTelemetry can carry are kept', async (t) => {
  const cases: [unknown, unknown][] = [
    ['s', 's'],
    [1, 1],
    [Number.NaN, undefined],
    [Infinity, undefined],
    [true, true],
    [null, undefined],
    [undefined, undefined],
    [{ a: 1 }, undefined],
    [[], []],
    [['a', 'b'], ['a', 'b']],
    [['a', 1], undefined],
    [[1, Number.NaN], undefined],
  ]
  for (const [input, want] of cases) t.same(cleanValue(input), want, JSON.stringify(input) ?? String(input))
})

t.test('OTLP ids are read as hex or base64', async (t) => {
  t.equal(otlpId('4BF92F3577B34DA6A3CE929D0E0E4736', 16), '4bf92f3577b34da6a3ce929d0e0e4736')
  t.equal(otlpId(Buffer.from('00f067aa0ba902b7', 'hex').toString('base64'), 8), '00f067aa0ba902b7')
  t.equal(otlpId('short', 8), undefined)
  t.equal(otlpId(undefined, 8), undefined)
})

t.test('OTLP/JSON spans become records, with typed values, enum names and flags', async (t) => {
  const records = recordsFromOtlpJson({
    resourceSpans: [
      {
        scopeSpans: [
          {
            spans: [
              {
                traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
                spanId: '00f067aa0ba902b7',
                parentSpanId: 'aaaaaaaaaaaaaaaa',
                flags: 0x301,
                name: 'chat m',
                kind: 'SPAN_KIND_SERVER',
                startTimeUnixNano: '1',
                endTimeUnixNano: 2,
                status: { code: 'STATUS_CODE_ERROR', message: 'x' },
                attributes: [
                  { key: 'i', value: { intValue: '42' } },
                  { key: 'd', value: { doubleValue: 0.5 } },
                  { key: 'b', value: { boolValue: false } },
                  { key: 'a', value: { arrayValue: { values: [{ stringValue: 'x' }, { stringValue: 'y' }] } } },
                  { key: 'mixed', value: { arrayValue: { values: [{ stringValue: 'x' }, { intValue: 1 }] } } },
                  { key: 'kv', value: { kvlistValue: { values: [] } } },
                ],
              },
              { traceId: 'bad', spanId: '00f067aa0ba902b7' },
            ],
          },
        ],
      },
    ],
  })
  t.same(records, [
    {
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      parentSpanId: 'aaaaaaaaaaaaaaaa',
      remoteParent: true,
      name: 'chat m',
      kind: SpanKind.SERVER,
      start: '1',
      end: '2',
      status: { code: 2, message: 'x' },
      attributes: { i: 42, d: 0.5, b: false, a: ['x', 'y'] },
    },
  ])
  t.same(recordsFromOtlpJson({}), [])
  t.same(recordsFromOtlpJson(null), [])
})
