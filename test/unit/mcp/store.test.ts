import t, { type Test } from 'tap'
import { memorySessionStore, sharedApprovalStore, sharedSessionStore, type ApprovalRecord } from '../../../src/mcp/store.ts'
import { RedisStore } from '../../../src/quotas/redis.ts'
import { startRedis, type TestRedis } from '../../helpers/redis.ts'

t.test('sessions in memory merge what entered them and expire', async (t) => {
  const s = memorySessionStore({ maxSessions: 10, ttlMs: 40 })
  s.record('a', ['secret'], false)
  s.record('a', ['pii'], true)
  t.same(s.get('a'), { dataClasses: ['pii', 'secret'], untrusted: true })
  await new Promise((r) => setTimeout(r, 80))
  t.equal(s.get('a'), undefined)
})

t.test('sessions in Redis: what one replica records, another decides with; writes at once are merged, and the session expires', async (t) => {
  const redis = await startRedis()
  const a = new RedisStore({ url: redis.url, keyPrefix: 'mg:', timeoutMs: 500 })
  const b = new RedisStore({ url: redis.url, keyPrefix: 'mg:', timeoutMs: 500 })
  t.teardown(async () => {
    await a.close()
    await b.close()
    await redis.stop()
  })
  t.ok((await a.connect()) && (await b.connect()))
  const replicaA = sharedSessionStore(a, { ttlMs: 60_000 })
  const replicaB = sharedSessionStore(b, { ttlMs: 60_000 })
  t.equal(await replicaB.get('s1'), undefined, 'a session nothing entered')
  await Promise.all([replicaA.record('s1', ['secret'], false), replicaB.record('s1', ['pii'], false), replicaA.record('s1', [], true)])
  t.same(await replicaB.get('s1'), { dataClasses: ['pii', 'secret'], untrusted: true }, 'every write kept, whichever replica made it')
  t.same(await replicaA.get('s1'), await replicaB.get('s1'))
  t.equal(await replicaA.get('s2'), undefined, 'sessions are apart')

  const brief = sharedSessionStore(a, { ttlMs: 40 })
  await brief.record('s3', ['secret'], false)
  await new Promise((r) => setTimeout(r, 80))
  t.equal(await replicaB.get('s3'), undefined, 'expired')
})

t.test('a Redis that cannot be reached fails the session store, so the exchange is refused rather than decided without it', async (t) => {
  const redis = await startRedis()
  const a = new RedisStore({ url: redis.url, keyPrefix: 'mg:', timeoutMs: 300 })
  t.teardown(async () => {
    await a.close()
    await redis.stop()
  })
  t.ok(await a.connect())
  await redis.kill()
  const sessions = sharedSessionStore(a, { ttlMs: 60_000 })
  const refused = { name: 'GateError', code: 'MG_STATE_UNAVAILABLE', status: 503, headers: { 'retry-after': '1' }, internal: /^agent session store \((record|get)\): redis/ }
  await t.rejects(Promise.resolve().then(() => sessions.record('s1', ['secret'], false)), refused)
  await t.rejects(Promise.resolve().then(() => sessions.get('s1')), refused)
})

let seq = 0
/** A pending approval made now, expiring after `ttlMs`. */
function approval(over: Partial<ApprovalRecord> & { ttlMs?: number } = {}): ApprovalRecord {
  const n = seq++
  const t0 = Date.now()
  const { ttlMs = 60_000, ...rest } = over
  return {
    id: `apr_00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    binding: `binding-${n}`,
    caller: 'spiffe://modelgate.local/ns/research/sa/notebook',
    user: undefined,
    actor: undefined,
    tool: 'mcp:tools/delete_record',
    argumentsDigest: `digest-${n}`,
    reasons: ['a destructive tool'],
    policySetHash: 'set-1',
    createdAt: t0,
    expiresAt: t0 + ttlMs,
    state: 'pending',
    ...rest,
  }
}

/** `count` replicas' Redis stores on one redis-server, closed with the test. */
async function replicas(t: Test, redis: TestRedis, count: number, prefix = 'mg:'): Promise<RedisStore[]> {
  const stores = Array.from({ length: count }, () => new RedisStore({ url: redis.url, keyPrefix: prefix, timeoutMs: 500 }))
  t.teardown(async () => {
    for (const s of stores) await s.close()
  })
  for (const s of stores) t.ok(await s.connect())
  return stores
}

t.test('approvals in Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())

  t.test('an approval asked for through one replica is read, found by its binding, listed and granted through another', async (t) => {
    const [a, b] = await replicas(t, redis, 2, 'share:')
    const replicaA = sharedApprovalStore(a!, { ttlMs: 60_000 })
    const replicaB = sharedApprovalStore(b!, { ttlMs: 60_000 })
    const pending = approval({ user: 'https://idp.example#alice', reasons: ['one', 'two'] })
    await replicaA.put(pending)
    t.same(await replicaB.get(pending.id), pending, 'every field read back as written')
    t.same(await replicaB.byBinding(pending.binding), pending)
    t.same((await replicaB.list()).map((r) => r.id), [pending.id])
    const granted: ApprovalRecord = { ...pending, state: 'granted', approver: 'spiffe://modelgate.local/ns/security/sa/approver', grantedAt: Date.now() }
    await replicaB.put(granted)
    t.same(await replicaA.byBinding(pending.binding), granted, 'the grant is seen through the replica that asked')
    const newer = approval({ binding: pending.binding })
    await replicaA.put(newer)
    t.equal((await replicaB.byBinding(pending.binding))?.id, newer.id, 'the binding names its newest approval')
    t.same((await replicaB.list()).map((r) => r.id).sort(), [pending.id, newer.id].sort(), 'both are listed')
    t.equal(await replicaB.get('apr_00000000-0000-4000-8000-ffffffffffff'), undefined, 'an unknown id')
    t.equal(await replicaB.byBinding('no-such-binding'), undefined, 'an unknown binding')
  })

  t.test('of twenty takes of one grant at once through four replicas, exactly one gets it', async (t) => {
    const stores = await replicas(t, redis, 4, 'take:')
    const approvals = stores.map((s) => sharedApprovalStore(s, { ttlMs: 60_000 }))
    const granted = approval({ state: 'granted' })
    await approvals[0]!.put(granted)
    const taken = await Promise.all(Array.from({ length: 20 }, (_, i) => approvals[i % 4]!.take(granted.id)))
    t.same(taken.filter((r) => r !== undefined), [granted])
    t.equal(await approvals[1]!.get(granted.id), undefined, 'gone once taken')
    t.same(await approvals[2]!.list(), [], 'a taken approval is not listed')
  })

  t.test('an expired approval is kept for one more lifetime, so a late use finds it expired rather than unknown; then it is gone', async (t) => {
    const [a, b] = await replicas(t, redis, 2, 'expiry:')
    const replicaA = sharedApprovalStore(a!, { ttlMs: 1000 })
    const replicaB = sharedApprovalStore(b!, { ttlMs: 1000 })
    const brief = approval({ state: 'granted', ttlMs: 100 })
    await replicaA.put(brief)
    await new Promise((r) => setTimeout(r, 200))
    const late = await replicaB.byBinding(brief.binding)
    t.equal(late?.id, brief.id, 'still found past its expiry')
    t.ok(late!.expiresAt <= Date.now(), 'and seen to be expired')
    t.same((await replicaB.list()).map((r) => r.id), [brief.id], 'still listed (the approval API shows only unexpired pending ones)')
    await new Promise((r) => setTimeout(r, 1000))
    t.equal(await replicaB.get(brief.id), undefined, 'dropped after its extra lifetime')
    t.equal(await replicaB.byBinding(brief.binding), undefined)
    t.same(await replicaB.list(), [])
  })

  t.test('beyond maxEntries the approval kept the shortest is dropped, record and all', async (t) => {
    const [a] = await replicas(t, redis, 1, 'bound:')
    const approvals = sharedApprovalStore(a!, { ttlMs: 60_000, maxEntries: 3 })
    const made = [approval({ ttlMs: 10_000 }), approval({ ttlMs: 20_000 }), approval({ ttlMs: 30_000 }), approval({ ttlMs: 40_000 })]
    for (const r of made) await approvals.put(r)
    t.same((await approvals.list()).map((r) => r.id), made.slice(1).map((r) => r.id), 'listed, the soonest to go first')
    t.equal(await approvals.get(made[0]!.id), undefined, 'the dropped approval is unknown')
    t.equal(await approvals.byBinding(made[0]!.binding), undefined)
  })

  t.test('a record that is not an approval is refused rather than trusted', async (t) => {
    const [a] = await replicas(t, redis, 1, 'bad:')
    const approvals = sharedApprovalStore(a!, { ttlMs: 60_000 })
    await a!.put('mcp-approval', 'apr_bad', '{"id":"apr_bad","state":"granted"}', 60_000)
    await t.rejects(Promise.resolve(approvals.get('apr_bad')), { name: 'GateError', code: 'MG_INTERNAL' })
    await a!.put('mcp-approval', 'apr_bad', 'not json', 60_000)
    await t.rejects(Promise.resolve(approvals.take('apr_bad')), { name: 'GateError', code: 'MG_INTERNAL' })
  })
})

t.test('a Redis that cannot be reached refuses every approval operation as unavailable (503, retry), never an answer without it', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const [a] = await replicas(t, redis, 1)
  const approvals = sharedApprovalStore(a!, { ttlMs: 60_000 })
  const pending = approval()
  await approvals.put(pending)
  await redis.kill()
  const refused = { name: 'GateError', code: 'MG_STATE_UNAVAILABLE', status: 503, headers: { 'retry-after': '1' }, internal: /^approval store \(\w+\): redis/ }
  await t.rejects(Promise.resolve(approvals.get(pending.id)), refused)
  await t.rejects(Promise.resolve(approvals.byBinding(pending.binding)), refused)
  await t.rejects(Promise.resolve(approvals.put(approval())), refused)
  await t.rejects(Promise.resolve(approvals.take(pending.id)), refused)
  await t.rejects(Promise.resolve(approvals.list()), refused)
})
