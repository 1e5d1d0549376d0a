import t from 'tap'
import { GateError } from '../../../src/errors.ts'
import { inProcessInspector, requestScanOf, type BodyInspector } from '../../../src/inspection/inspector.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import { matchRoute } from '../../../src/providers/routes.ts'
import { compileRedaction, redactionConfigFrom } from '../../../src/redaction/engine.ts'

const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const CHAT = matchRoute('/v1/chat/completions')!
const engine = compileRedaction(redactionConfigFrom({}), {})

function ctxFor(body: string): RequestContext {
  const ctx = new RequestContext()
  ctx.requestBody = Buffer.from(body)
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

t.test('a body is parsed and scanned once; the scan is left for the redaction stage', async (t) => {
  const ctx = ctxFor(JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: `key ${TOKEN}` }], metadata: { [TOKEN]: 1 } }))
  const request = await inProcessInspector({ engine, budgetMs: 30_000 }).inspect(ctx, CHAT, 'openai')
  t.equal(request.model, 'gpt-4o')
  t.same(
    requestScanOf(ctx)!.sites.map((s) => [s.location, s.detections.map((d) => d.detector)]),
    [
      ['messages[0].content', ['github-pat']],
      ['metadata.<key>', ['github-pat']],
    ],
  )
})

t.test('refusals keep their code, details, line and column; a key holding a secret is named by its label', async (t) => {
  const inspector = inProcessInspector({ engine, budgetMs: 30_000 })
  const dup = await refusal(inspector, ctxFor(`{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],\n"model":"gpt-4o-mini"}`))
  t.same([dup?.code, dup?.status, dup?.details], ['MG_BODY_DUPLICATE_KEY', 400, { field: 'model', line: 2, column: 1 }])
  const secretKey = await refusal(inspector, ctxFor(`{"metadata":{"${TOKEN}":1,"${TOKEN}":2}}`))
  t.same(secretKey?.details, { field: 'metadata.[GITHUB_TOKEN]', line: 1, column: 59 })
  t.notOk(JSON.stringify([secretKey?.details, secretKey?.internal]).includes(TOKEN), 'neither the details nor the internal reason hold the value')
  const invalid = await refusal(inspector, ctxFor('{"model":"gpt-4o","messages":[]}'))
  t.same([invalid?.code, invalid?.details], ['MG_BODY_INVALID', { field: 'messages', problem: 'must not be empty' }])
})

t.test('work past the deadline stops with MG_TIMEOUT', async (t) => {
  t.equal((await refusal(inProcessInspector({ engine, budgetMs: -1 }), ctxFor('{"model":"m","messages":[{"role":"user","content":"x"}]}')))?.code, 'MG_TIMEOUT')
})

t.test('without an engine a body is parsed and not scanned', async (t) => {
  const ctx = ctxFor(`{"model":"m","messages":[{"role":"user","content":"${TOKEN}"}]}`)
  t.equal((await inProcessInspector().inspect(ctx, CHAT, 'openai')).model, 'm')
  t.equal(requestScanOf(ctx), undefined)
})
