import t from 'tap'
import { fileURLToPath } from 'node:url'
import { GateError } from '../../../src/errors.ts'
import { createBodyInspector, inProcessInspector, requestScanOf, type BodyInspector } from '../../../src/inspection/inspector.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import { Pipeline } from '../../../src/pipeline/pipeline.ts'
import { createProviderStage } from '../../../src/providers/stage.ts'
import { matchRoute } from '../../../src/providers/routes.ts'
import { compileRedaction, redactionConfigFrom } from '../../../src/redaction/engine.ts'

const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const CHAT = matchRoute('/v1/chat/completions')!
const fixture = (name: string) => fileURLToPath(new URL(`../../fixtures/inspection/${name}`, import.meta.url))
const engine = compileRedaction(redactionConfigFrom({ custom: [{ id: 'scoped-word', dataClass: 'internal', confidence: 'high', words: ['Bluebird'], namespaces: ['research'] }] }), {})

function ctxFor(body: string | Buffer, namespace?: string): RequestContext {
  const ctx = new RequestContext()
  ctx.requestBody = Buffer.isBuffer(body) ? body : Buffer.from(body)
  if (namespace) ctx.put('caller', { workload: { spiffeId: `spiffe://example.org/ns/${namespace}/sa/app`, trustDomain: 'example.org', path: `/ns/${namespace}/sa/app`, namespace, serviceAccount: 'app', source: 'mtls', certificateSha256: undefined }, user: undefined })
  return ctx
}

async function refusal(inspector: BodyInspector, ctx: RequestContext): Promise<GateError | undefined> {
  try {
    await inspector.inspect(ctx, CHAT, 'openai')
    return undefined
  } catch (err) {
    if (err instanceof GateError) return err
    throw err
  }
}

/** A chat body of about `bytes` bytes with the token and the scoped word in the last message. */
function bigBody(bytes: number): string {
  const filler = Array.from({ length: Math.ceil(bytes / 120) }, (_, i) => ({ role: 'user', content: `message ${i} `.padEnd(100, 'x') }))
  return JSON.stringify({ model: 'gpt-4o', messages: [...filler, { role: 'user', content: `key ${TOKEN} for Bluebird` }], metadata: { [TOKEN]: 1 } })
}

t.test('large bodies go to the pool and come back with the same results as in this thread', async (t) => {
  const pooled = await createBodyInspector({ engine, workers: 1, workerMinBytes: 64 * 1024, budgetMs: 30_000 })
  t.teardown(() => pooled.close())
  const local = inProcessInspector({ engine, budgetMs: 30_000 })
  const body = bigBody(300 * 1024)
  const a = ctxFor(body, 'research')
  const b = ctxFor(body, 'research')
  const ra = await pooled.inspect(a, CHAT, 'openai')
  const rb = await local.inspect(b, CHAT, 'openai')
  t.same(ra, rb, 'the same parsed request')
  t.ok(Object.isFrozen(ra) && Object.isFrozen(ra.tools), 'frozen again after the trip')
  t.same(requestScanOf(a), requestScanOf(b), 'the same scan: sites, spans, locations, detections')
  const detectors = requestScanOf(a)!.sites.flatMap((s) => s.detections.map((d) => `${s.location} ${d.detector}`))
  t.same(detectors, [`messages[${Math.ceil((300 * 1024) / 120)}].content github-pat`, `messages[${Math.ceil((300 * 1024) / 120)}].content scoped-word`, 'metadata.<key> github-pat'], 'scoped detectors see the caller in the worker too')
  t.equal(requestScanOf(a)!.sites.length, 2, 'only the texts with detections come back')
  const outsider = ctxFor(body, 'payments')
  await pooled.inspect(outsider, CHAT, 'openai')
  t.notOk(requestScanOf(outsider)!.sites.some((s) => s.detections.some((d) => d.detector === 'scoped-word')), 'a caller outside the scope is not matched by the scoped detector')
})

t.test('refusals keep their code, details, line and column, from a worker and in this thread', async (t) => {
  const pooled = await createBodyInspector({ engine, workers: 1, workerMinBytes: 1, budgetMs: 30_000 })
  t.teardown(() => pooled.close())
  for (const [where, inspector] of [
    ['worker', pooled],
    ['this thread', inProcessInspector({ engine, budgetMs: 30_000 })],
  ] as const) {
    const dup = await refusal(inspector, ctxFor(`{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],\n"model":"gpt-4o-mini"}`))
    t.same([dup?.code, dup?.status, dup?.details], ['MG_BODY_DUPLICATE_KEY', 400, { field: 'model', line: 2, column: 1 }], where)
    const secretKey = await refusal(inspector, ctxFor(`{"metadata":{"${TOKEN}":1,"${TOKEN}":2}}`))
    t.same(secretKey?.details, { field: 'metadata.[GITHUB_TOKEN]', line: 1, column: 59 }, `${where}: a key holding a secret is named by its label, never its value`)
    t.notOk(JSON.stringify([secretKey?.details, secretKey?.internal]).includes(TOKEN), `${where}: neither the details nor the internal reason hold the value`)
    const invalid = await refusal(inspector, ctxFor('{"model":"gpt-4o","messages":[]}'))
    t.same([invalid?.code, invalid?.details], ['MG_BODY_INVALID', { field: 'messages', problem: 'must not be empty' }], where)
    const complex = await refusal(inspector, ctxFor('[' + Array.from({ length: 200_000 }, () => '"ab"').join(',') + ']'))
    t.same([complex?.code, complex?.status, complex?.details], ['MG_BODY_TOO_COMPLEX', 413, { limit: 100_000, line: 1, column: 499_997 }], where)
  }
})

t.test('work past the deadline stops with MG_TIMEOUT, in the pool and in this thread', async (t) => {
  const pooled = await createBodyInspector({ engine, workers: 1, workerMinBytes: 1, budgetMs: -1 })
  t.teardown(() => pooled.close())
  t.equal((await refusal(pooled, ctxFor(bigBody(100 * 1024))))?.code, 'MG_TIMEOUT')
  t.equal((await refusal(inProcessInspector({ engine, budgetMs: -1 }), ctxFor(bigBody(1024))))?.code, 'MG_TIMEOUT')
})

t.test('a failing worker refuses the request (MG_INTERNAL), and the pool keeps serving', async (t) => {
  const pooled = await createBodyInspector({ workers: 1, workerMinBytes: 1, workerFile: fixture('faulty-worker.ts'), budgetMs: 30_000 })
  t.teardown(() => pooled.close())
  const thrown = await refusal(pooled, ctxFor('{"model":"throw","messages":[{"role":"user","content":"x"}]}'))
  t.same([thrown?.code, thrown?.status], ['MG_INTERNAL', 500])
  t.match(thrown?.internal, /^body inspection worker failed: injected fault/)
  const exited = await refusal(pooled, ctxFor('{"model":"exit","messages":[{"role":"user","content":"x"}]}'))
  t.equal(exited?.code, 'MG_INTERNAL', 'a worker that dies mid-task refuses the request')
  const ok = await pooled.inspect(ctxFor('{"model":"fine","messages":[{"role":"user","content":"x"}]}'), CHAT, 'openai')
  t.equal(ok.model, 'fine', 'a replacement worker serves the next request')
})

t.test('the phase deadline applies to work in a worker: the caller is refused in time, the worker finishes on its own', async (t) => {
  const pooled = await createBodyInspector({ workers: 1, workerMinBytes: 1, workerFile: fixture('faulty-worker.ts'), budgetMs: 30_000 })
  t.teardown(() => pooled.close())
  const provider = createProviderStage({ config: { catalog: { openai: { kind: 'openai', upstream: 'https://api.openai.com' } } }, maxBodyBytes: 1 << 20, inspector: pooled })
  const pipeline = new Pipeline([provider], { phaseTimeoutMs: 200 })
  const ctx = ctxFor('{"model":"slow","messages":[{"role":"user","content":"x"}]}')
  ctx.method = 'POST'
  ctx.path = '/v1/chat/completions'
  ctx.requestHeaders.set('content-type', 'application/json')
  await pipeline.run('requestHeaders', ctx)
  const started = Date.now()
  await t.rejects(pipeline.run('requestBody', ctx), { code: 'MG_TIMEOUT' })
  t.ok(Date.now() - started < 2500, 'refused at the phase deadline, not when the worker answers')
  t.equal(ctx.out.request, undefined)
})

t.test('a closed pool refuses large bodies and still serves small ones in this thread', async (t) => {
  const pooled = await createBodyInspector({ workers: 1, workerMinBytes: 1024 })
  await pooled.close()
  t.equal((await refusal(pooled, ctxFor(bigBody(4096))))?.code, 'MG_INTERNAL')
  t.equal((await pooled.inspect(ctxFor('{"model":"m","messages":[{"role":"user","content":"x"}]}'), CHAT, 'openai')).model, 'm')
})

t.test('workers that cannot start fail start-up', async (t) => {
  await t.rejects(createBodyInspector({ workers: 1, workerFile: fixture('broken-worker.ts') }), /body inspection workers failed to start: injected start-up failure/)
})

t.test('without an engine a body is parsed and not scanned', async (t) => {
  const ctx = ctxFor(bigBody(1024))
  t.equal((await inProcessInspector().inspect(ctx, CHAT, 'openai')).model, 'gpt-4o')
  t.equal(requestScanOf(ctx), undefined)
})
