import t from 'tap'
import { memorySessionStore, sharedSessionStore } from '../../../src/mcp/store.ts'
import { RedisStore } from '../../../src/quotas/redis.ts'
import { startRedis } from '../../helpers/redis.ts'

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
  await t.rejects(Promise.resolve().then(() => sessions.record('s1', ['secret'], false)), { name: 'StoreUnavailableError' })
  await t.rejects(Promise.resolve().then(() => sessions.get('s1')), { name: 'StoreUnavailableError' })
})
