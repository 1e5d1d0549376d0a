import t from 'tap'
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
  t.same(a.usage, { input: undefined, output: undefined })
  t.equal(a.identity, undefined)
  t.equal(a.denial, undefined)
  t.ok(a.requestHeaderChanges.empty && a.responseHeaderChanges.empty)
  t.ok(a.elapsedMs() >= 0)
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
