import t from 'tap'
import { configFromObject } from '../../../src/config/config.ts'
import { silentLogger } from '../../../src/log.ts'
import { createMcpGovernance } from '../../../src/mcp/governance.ts'
import { memorySessionStore, type SessionStore } from '../../../src/mcp/store.ts'
import { RequestContext, type Finding } from '../../../src/pipeline/context.ts'
import type { PolicyEngine } from '../../../src/policy/engine.ts'
import type { RequestFacts } from '../../../src/policy/request.ts'

const config = configFromObject({ identity: { trustDomains: ['example.org'] } }, 'test').mcp
const FACTS = { extra: { callerClass: 'service' } } as unknown as RequestFacts

function finding(dataClass: string, direction: 'request' | 'response'): Finding {
  return { detector: 'd', dataClass, confidence: 'high', direction, location: 'x', start: 0, length: 1, hash: 'h', action: 'redact' }
}

function sessionContext(caller: string, session: string): RequestContext {
  const ctx = new RequestContext()
  ctx.put('caller', { workload: { spiffeId: caller, trustDomain: 'example.org', path: '/ns/a/sa/b', namespace: 'a', serviceAccount: 'b', source: 'mtls', certificateSha256: undefined }, user: ctx.out.caller?.user })
  ctx.requestHeaders.set('x-modelgate-session', session)
  return ctx
}

t.test('a model request in a session records its data classes before they leave, bound to the caller', async (t) => {
  const sessions = memorySessionStore({ maxSessions: 10, ttlMs: 60_000 })
  const gov = createMcpGovernance({ engine: {} as PolicyEngine, config, logger: silentLogger, maxBytes: 1024, sessions })
  const ctx = sessionContext('spiffe://example.org/a', 's1')
  const before = (await gov.authorizer.sessionFacts!(ctx, FACTS)) as RequestFacts
  t.same(before.extra, { callerClass: 'service', sessionDataClasses: [], sessionUntrusted: false })
  ctx.addFinding(finding('pii', 'request'))
  gov.sessionStage.requestBody!(ctx)
  const again = sessionContext('spiffe://example.org/a', 's1')
  t.same(((await gov.authorizer.sessionFacts!(again, FACTS)) as RequestFacts).extra?.sessionDataClasses, ['pii'])
  const other = sessionContext('spiffe://example.org/other', 's1')
  t.same(((await gov.authorizer.sessionFacts!(other, FACTS)) as RequestFacts).extra?.sessionDataClasses, [], 'another caller naming the same id has a session of its own')
})

t.test('a session store that fails ends the exchange instead of letting the data out unrecorded', async (t) => {
  const failing: SessionStore = { get: () => undefined, record: () => Promise.reject(new Error('store down')) }
  const gov = createMcpGovernance({ engine: {} as PolicyEngine, config, logger: silentLogger, maxBytes: 1024, sessions: failing })
  const ctx = sessionContext('spiffe://example.org/a', 's1')
  await gov.authorizer.sessionFacts!(ctx, FACTS)
  ctx.addFinding(finding('secret', 'response'))
  await t.rejects(gov.sessionStage.responseBody!(ctx, { data: Buffer.from('x'), end: true }) as Promise<void>, { code: 'MG_STATE_UNAVAILABLE', status: 503 })
})

t.test('a request in no session records nothing', async (t) => {
  let writes = 0
  const counting: SessionStore = { get: () => undefined, record: () => void writes++ }
  const gov = createMcpGovernance({ engine: {} as PolicyEngine, config, logger: silentLogger, maxBytes: 1024, sessions: counting })
  const ctx = new RequestContext()
  ctx.addFinding(finding('pii', 'request'))
  t.equal(gov.authorizer.sessionFacts!(ctx, FACTS), FACTS, "the facts are the request's own")
  gov.sessionStage.requestBody!(ctx)
  gov.sessionStage.responseBody!(ctx, { data: Buffer.from('x'), end: true })
  t.equal(writes, 0)
})
