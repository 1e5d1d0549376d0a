import t from 'tap'
import { checkFlow } from '../../../src/pipeline/outputs.ts'
import { HeaderChanges, RequestContext, type Finding } from '../../../src/pipeline/context.ts'

t.test('HeaderChanges: the last set or remove of a header wins, names are lower-cased', async (t) => {
  const h = new HeaderChanges()
  t.equal(h.empty, true)
  h.setHeader('Content-Length', '10')
  h.removeHeader('X-Spiffe-Id')
  t.same([...h.set], [['content-length', '10']])
  t.same([...h.remove], ['x-spiffe-id'])
  h.removeHeader('content-length')
  t.same([...h.set], [])
  t.same([...h.remove].sort(), ['content-length', 'x-spiffe-id'])
  h.setHeader('X-SPIFFE-ID', 'kept')
  t.same([...h.set], [['x-spiffe-id', 'kept']])
  t.same([...h.remove], ['content-length'])
  h.setHeader('x-spiffe-id', 'again')
  t.same([...h.set], [['x-spiffe-id', 'again']], 'a second set overwrites')
  t.equal(h.empty, false)
  h.clear()
  t.equal(h.empty, true)
})

t.test('a new context has an id, a start time and empty state', async (t) => {
  const a = new RequestContext()
  const b = new RequestContext({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' })
  t.match(a.id, /^[0-9a-f-]{36}$/)
  t.not(a.id, b.id)
  t.same(a.trace, {})
  t.equal(b.trace.traceparent, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')
  t.equal(a.requestBody.length, 0)
  t.equal(a.requestBodyReplaced, false)
  t.same(a.out, {}, 'no stage output yet')
  t.equal(a.denial, undefined)
  t.ok(a.requestHeaderChanges.empty && a.responseHeaderChanges.empty)
  t.ok(a.elapsedMs() >= 0)
})

const WORKLOAD = { spiffeId: 'spiffe://example.org/ns/a/sa/b', trustDomain: 'example.org', path: '/ns/a/sa/b', namespace: 'a', serviceAccount: 'b', source: 'mtls', certificateSha256: undefined } as const

t.test('a stage output is written by the stage that produces it and read by the rest', async (t) => {
  const { owners } = checkFlow([{ name: 'identity', produces: ['caller'] }, { name: 'policy', consumes: ['caller'], produces: ['decision'] }])
  const ctx = new RequestContext()
  ctx.bindOwners(owners)
  ctx.stage = 'identity'
  const caller = { workload: WORKLOAD, user: undefined }
  t.equal(ctx.put('caller', caller), caller, 'put returns what it wrote')
  ctx.stage = 'policy'
  t.equal(ctx.need('caller'), caller)
  t.throws(() => ctx.put('caller', caller), { code: 'MG_INTERNAL', internal: 'stage "policy" wrote output "caller", which it does not produce' }, 'a consumer cannot overwrite it')
  t.throws(() => ctx.need('request'), { code: 'MG_INTERNAL', internal: 'stage "policy" needs output "request", which no stage produced for this request' })
  t.equal(ctx.out.request, undefined, 'an output nobody produced reads as undefined')
})

t.test('before the pipeline binds its owners, any code may put an output (tests, the redact command)', async (t) => {
  const ctx = new RequestContext()
  ctx.put('url', { path: '/v1/chat/completions', queryNames: [] })
  t.same(ctx.out.url, { path: '/v1/chat/completions', queryNames: [] })
})

t.test('local() creates per-request state once per key', async (t) => {
  const ctx = new RequestContext()
  const key = Symbol('stage')
  let calls = 0
  const first = ctx.local(key, () => ({ n: ++calls }))
  const second = ctx.local(key, () => ({ n: ++calls }))
  t.equal(first, second)
  t.equal(calls, 1)
  t.equal(ctx.local(Symbol('stage'), () => 'other'), 'other', 'another symbol with the same description is another key')
  t.equal(new RequestContext().local(key, () => 'fresh'), 'fresh', 'contexts do not share local state')
  const undef = Symbol('undef')
  let initCalls = 0
  ctx.local(undef, () => (initCalls++, undefined))
  ctx.local(undef, () => (initCalls++, undefined))
  t.equal(initCalls, 1, 'an undefined value is still remembered')
})

t.test('replaceRequestBody marks the body as replaced', async (t) => {
  const ctx = new RequestContext()
  ctx.requestBody = Buffer.from('original')
  t.equal(ctx.requestBodyReplaced, false)
  ctx.replaceRequestBody(Buffer.from('new'))
  t.equal(ctx.requestBody.toString(), 'new')
  t.equal(ctx.requestBodyReplaced, true)
})

t.test('addFinding records the finding and its data class', async (t) => {
  const ctx = new RequestContext()
  const f: Finding = {
    detector: 'email',
    dataClass: 'pii.email',
    confidence: 'high',
    direction: 'request',
    location: 'messages[0].content',
    start: 3,
    length: 17,
    hash: 'abc',
    action: 'redact',
  }
  ctx.addFinding(f)
  ctx.addFinding({ ...f, start: 30 })
  t.equal(ctx.findings.length, 2)
  t.same([...ctx.dataClasses], ['pii.email'])
})
