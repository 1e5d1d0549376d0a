import t from 'tap'
import { auditSection } from './fixtures.ts'

t.test('the audit section defaults to a fail-closed trail without content or stage spans', async (t) => {
  t.same(auditSection(), {
    enabled: true,
    otlp: 'auto',
    file: '',
    whenUnavailable: 'deny',
    spool: { dir: '', maxBytes: 268435456, retryInitialMs: 1000, retryMaxMs: 30000 },
    content: { enabled: false, maxBytes: 8192 },
    stageSpans: false,
    metrics: { otlp: 'auto' },
  })
})

t.test('invalid audit settings are rejected', async (t) => {
  const cases: { name: string; value: Record<string, unknown>; message: RegExp }[] = [
    { name: 'an unknown fail mode', value: { whenUnavailable: 'maybe' }, message: /whenUnavailable must be equal to one of the allowed values/ },
    { name: 'a tiny spool', value: { spool: { maxBytes: 10 } }, message: /spool\/maxBytes must be >= 1024/ },
    { name: 'an unknown key', value: { spool: { path: '/x' } }, message: /must NOT have additional properties/ },
    { name: 'a content cap over 1 MiB', value: { content: { maxBytes: 2097152 } }, message: /content\/maxBytes must be <= 1048576/ },
    { name: 'an unknown otlp mode', value: { otlp: 'yes' }, message: /otlp must be equal to one of the allowed values/ },
  ]
  for (const c of cases) t.throws(() => auditSection(c.value as never), { message: c.message }, c.name)
})
