import t from 'tap'
import { describeUrl, parseKeyValueList, readOtelSettings } from '../../../src/audit/otel-env.ts'

const AUTO = { otlp: 'auto', metrics: { otlp: 'auto' } } as const

t.test('trace export is decided by the configuration and the standard variables', async (t) => {
  const cases: { name: string; cfg?: { otlp: 'auto' | 'on' | 'off'; metrics: { otlp: 'auto' | 'on' | 'off' } }; env: Record<string, string>; traces: string | undefined; metrics: string | undefined }[] = [
    { name: 'nothing set: no export', env: {}, traces: undefined, metrics: undefined },
    { name: 'the general endpoint gets the signal paths', env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }, traces: 'http://collector:4318/v1/traces', metrics: 'http://collector:4318/v1/metrics' },
    { name: 'a trailing slash on the general endpoint', env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/otlp/' }, traces: 'http://collector:4318/otlp/v1/traces', metrics: 'http://collector:4318/otlp/v1/metrics' },
    {
      name: 'the signal endpoint is used as it is',
      env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example.org/custom', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' },
      traces: 'https://traces.example.org/custom',
      metrics: 'http://collector:4318/v1/metrics',
    },
    { name: 'only a traces endpoint: no metrics export', env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }, traces: 'http://c:4318/v1/traces', metrics: undefined },
    { name: 'OTEL_TRACES_EXPORTER=otlp without endpoint: the default endpoint', env: { OTEL_TRACES_EXPORTER: 'otlp' }, traces: 'http://localhost:4318/v1/traces', metrics: undefined },
    { name: 'OTEL_TRACES_EXPORTER=none wins over an endpoint', env: { OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }, traces: undefined, metrics: 'http://c:4318/v1/metrics' },
    { name: 'OTEL_METRICS_EXPORTER=none', env: { OTEL_METRICS_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }, traces: 'http://c:4318/v1/traces', metrics: undefined },
    { name: 'OTEL_SDK_DISABLED turns everything off', env: { OTEL_SDK_DISABLED: 'TRUE', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }, traces: undefined, metrics: undefined },
    { name: 'audit.otlp: off', cfg: { otlp: 'off', metrics: { otlp: 'off' } }, env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }, traces: undefined, metrics: undefined },
    { name: 'audit.otlp: on without variables', cfg: { otlp: 'on', metrics: { otlp: 'on' } }, env: {}, traces: 'http://localhost:4318/v1/traces', metrics: 'http://localhost:4318/v1/metrics' },
    { name: 'gRPC uses the general endpoint as it is', env: { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317' }, traces: 'http://c:4317/', metrics: 'http://c:4317/v1/metrics' },
    { name: 'gRPC default endpoint', env: { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc', OTEL_TRACES_EXPORTER: 'otlp' }, traces: 'http://localhost:4317/', metrics: undefined },
  ]
  for (const c of cases) {
    const s = readOtelSettings(c.cfg ?? AUTO, c.env)
    t.same(s.problems, [], `${c.name}: no problems`)
    t.equal(s.traces?.url, c.traces, `${c.name}: traces`)
    t.equal(s.metrics?.url, c.metrics, `${c.name}: metrics`)
  }
})

t.test('headers, timeout, compression and TLS settings are read per signal, specific over general', async (t) => {
  const s = readOtelSettings(AUTO, {
    OTEL_EXPORTER_OTLP_ENDPOINT: 'https://c:4317',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/protobuf',
    OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc,x-tenant=a',
    OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-tenant=b',
    OTEL_EXPORTER_OTLP_TIMEOUT: '2000',
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '750',
    OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
    OTEL_EXPORTER_OTLP_CERTIFICATE: '/etc/ca.pem',
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY: '/etc/key.pem',
  })
  t.same(s.problems, [])
  t.same(s.traces, {
    protocol: 'grpc',
    url: 'https://c:4317/',
    headers: { authorization: 'Bearer abc', 'x-tenant': 'b' },
    timeoutMs: 750,
    insecure: false,
    certificateFile: '/etc/ca.pem',
    clientKeyFile: '/etc/key.pem',
    clientCertificateFile: undefined,
    gzip: true,
  })
  t.equal(s.metrics?.protocol, 'http/protobuf')
  t.equal(s.metrics?.timeoutMs, 2000)
  t.same(s.metrics?.headers, { authorization: 'Bearer abc', 'x-tenant': 'a' })
})

t.test('service name and resource attributes follow the spec precedence', async (t) => {
  t.equal(readOtelSettings(AUTO, {}).serviceName, 'modelgate')
  t.equal(readOtelSettings(AUTO, { OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs' }).serviceName, 'from-attrs')
  const s = readOtelSettings(AUTO, { OTEL_SERVICE_NAME: 'gate-eu', OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attrs,deployment.environment=prod,team=a%2Cb' })
  t.equal(s.serviceName, 'gate-eu')
  t.same(s.resourceAttributes, { 'service.name': 'from-attrs', 'deployment.environment': 'prod', team: 'a,b' })
})

t.test('batch settings come from OTEL_BSP_* with modelgate defaults', async (t) => {
  t.same(readOtelSettings(AUTO, {}).batch, { delayMs: 500, maxBatch: 512, maxQueue: 8192 })
  t.same(readOtelSettings(AUTO, { OTEL_BSP_SCHEDULE_DELAY: '50', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '10', OTEL_BSP_MAX_QUEUE_SIZE: '100' }).batch, { delayMs: 50, maxBatch: 10, maxQueue: 100 })
})

t.test('every unusable value is reported together', async (t) => {
  const s = readOtelSettings(AUTO, {
    OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318',
    OTEL_EXPORTER_OTLP_TIMEOUT: 'soon',
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '5000',
    OTEL_BSP_MAX_QUEUE_SIZE: '100',
    OTEL_RESOURCE_ATTRIBUTES: 'novalue',
  })
  t.equal(s.problems.length, 5, s.problems.join('\n'))
  t.ok(s.problems.includes('OTEL_RESOURCE_ATTRIBUTES: entry "novalue" is not key=value'), 'resource attributes')
  t.ok(s.problems.some((p) => p.startsWith('OTEL_EXPORTER_OTLP_TIMEOUT="soon"')), 'timeout')
  t.ok(s.problems.some((p) => p.includes('must start with http://')), 'endpoint scheme')
  t.ok(s.problems.some((p) => p.startsWith('OTEL_BSP_MAX_EXPORT_BATCH_SIZE (5000)')), 'batch over queue')
})

t.test('unsupported protocols and exporters are refused or warned about', async (t) => {
  const json = readOtelSettings(AUTO, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' })
  t.match(json.problems, [/modelgate exports with "http\/protobuf" or "grpc"/, /modelgate exports with "http\/protobuf" or "grpc"/])
  const grpcMetrics = readOtelSettings(AUTO, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })
  t.match(grpcMetrics.problems, [/metrics are exported with "http\/protobuf" only/])
  const console = readOtelSettings(AUTO, { OTEL_TRACES_EXPORTER: 'console,otlp', OTEL_METRICS_EXPORTER: 'prometheus' })
  t.same(console.problems, [])
  t.same(console.warnings, ['OTEL_TRACES_EXPORTER: "console" is not supported by modelgate and is ignored'])
  t.ok(console.traces, 'otlp still on')
})

t.test('key=value lists decode percent-encoding and skip blanks', async (t) => {
  const problems: string[] = []
  t.same(parseKeyValueList(' a = 1 ,, b=x%3Dy ,c=', 'X', problems), { a: '1', b: 'x=y', c: '' })
  t.same(problems, [])
  parseKeyValueList('k=%E0%A4%A', 'X', problems)
  t.same(problems, ['X: the value of "k" is not valid percent-encoding'])
})

t.test('endpoints are described without credentials or query', async (t) => {
  t.equal(describeUrl('https://user:secret@collector:4318/v1/traces?token=abc'), 'https://collector:4318/v1/traces')
  t.equal(describeUrl('nonsense'), '(invalid URL)')
})
