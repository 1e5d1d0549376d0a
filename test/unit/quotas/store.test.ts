import t, { type Test } from 'tap'
import { MemoryStore } from '../../../src/quotas/memory.ts'
import { RedisStore } from '../../../src/quotas/redis.ts'
import { StoreUnavailableError, type ReserveItem, type StateStore } from '../../../src/quotas/store.ts'
import { startRedis } from '../../helpers/redis.ts'

const gcra = (key: string, limit: number, cost: number, windowMs = 3_600_000): ReserveItem => ({ key, algorithm: 'gcra', limit, windowMs, cost })
const month = (key: string, limit: number, cost: number): ReserveItem => ({ key, algorithm: 'month', limit, windowMs: 0, cost })
const slot = (key: string, limit: number): ReserveItem => ({ key, algorithm: 'concurrent', limit, windowMs: 0, cost: 1 })

async function behaves(t: Test, name: string, make: () => Promise<StateStore>): Promise<void> {
  t.test(`${name}: a budget of 5 requests admits exactly 5 of 50 reservations made at once`, async (t) => {
    const s = await make()
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => s.reserve([gcra('r:requests:*', 5, 1)], { id: `a${i}`, ttlMs: 60_000 })))
    t.equal(results.filter((r) => r.ok).length, 5)
    const refused = results.find((r) => !r.ok)!
    t.equal(refused.ok, false)
    if (!refused.ok) {
      t.equal(refused.refused, 0)
      t.ok(refused.retryAfterMs! > 0 && refused.retryAfterMs! <= 720_000, 'retry after one emission interval at most')
    }
  })

  t.test(`${name}: a token budget admits reservations until their sum would pass it`, async (t) => {
    const s = await make()
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => s.reserve([gcra('r:tokens:*', 1000, 300)], { id: `b${i}`, ttlMs: 60_000 })))
    t.equal(results.filter((r) => r.ok).length, 3)
    const ok = results.find((r) => r.ok)!
    t.ok(ok.counters[0]!.remaining >= 99 && ok.counters[0]!.remaining <= 700)
  })

  t.test(`${name}: one refusing counter leaves every other counter of the request uncharged`, async (t) => {
    const s = await make()
    t.ok((await s.reserve([gcra('c:requests:*', 1, 1)], { id: 'x', ttlMs: 1000 })).ok)
    const r = await s.reserve([gcra('d:requests:*', 10, 1), gcra('c:requests:*', 1, 1)], { id: 'y', ttlMs: 1000 })
    t.equal(r.ok, false)
    if (!r.ok) t.equal(r.refused, 1)
    const usage = await s.usage((key) => (key.startsWith('d:') ? { key, algorithm: 'gcra', limit: 10, windowMs: 3_600_000 } : undefined))
    t.same(usage, [], 'the admitting counter was not charged')
  })

  t.test(`${name}: settling gives back what was not used and charges what was used beyond`, async (t) => {
    const s = await make()
    t.ok((await s.reserve([gcra('e:tokens:*', 1000, 900)], { id: 'e1', ttlMs: 1000 })).ok)
    t.notOk((await s.reserve([gcra('e:tokens:*', 1000, 200)], { id: 'e2', ttlMs: 1000 })).ok)
    await s.settle([{ key: 'e:tokens:*', algorithm: 'gcra', limit: 1000, windowMs: 3_600_000, delta: -500 }], 'e1')
    t.ok((await s.reserve([gcra('e:tokens:*', 1000, 200)], { id: 'e3', ttlMs: 1000 })).ok, 'the refund made room')
    await s.settle([{ key: 'e:tokens:*', algorithm: 'gcra', limit: 1000, windowMs: 3_600_000, delta: 500 }], 'e3')
    t.notOk((await s.reserve([gcra('e:tokens:*', 1000, 1)], { id: 'e4', ttlMs: 1000 })).ok, 'usage beyond the reservation is charged too')
  })

  t.test(`${name}: a concurrent limit admits that many in flight and frees a slot on release`, async (t) => {
    const s = await make()
    t.ok((await s.reserve([slot('f:concurrent:*', 2)], { id: 'f1', ttlMs: 60_000 })).ok)
    t.ok((await s.reserve([slot('f:concurrent:*', 2)], { id: 'f2', ttlMs: 60_000 })).ok)
    const third = await s.reserve([slot('f:concurrent:*', 2)], { id: 'f3', ttlMs: 60_000 })
    t.notOk(third.ok)
    await s.settle([{ key: 'f:concurrent:*', algorithm: 'concurrent', limit: 2, windowMs: 0, delta: 0 }], 'f1')
    t.ok((await s.reserve([slot('f:concurrent:*', 2)], { id: 'f3', ttlMs: 60_000 })).ok)
  })

  t.test(`${name}: a slot whose release never comes stops counting after its time`, async (t) => {
    const s = await make()
    t.ok((await s.reserve([slot('g:concurrent:*', 1)], { id: 'g1', ttlMs: 50 })).ok)
    t.notOk((await s.reserve([slot('g:concurrent:*', 1)], { id: 'g2', ttlMs: 50 })).ok)
    await new Promise((r) => setTimeout(r, 80))
    t.ok((await s.reserve([slot('g:concurrent:*', 1)], { id: 'g3', ttlMs: 50 })).ok)
  })

  t.test(`${name}: a calendar-month counter admits up to its limit and no more`, async (t) => {
    const s = await make()
    t.ok((await s.reserve([month('h:tokens:*', 100, 60)], { id: 'h1', ttlMs: 1000 })).ok)
    const r = await s.reserve([month('h:tokens:*', 100, 60)], { id: 'h2', ttlMs: 1000 })
    t.notOk(r.ok)
    if (!r.ok) t.ok(r.retryAfterMs! > 0 && r.retryAfterMs! <= 31 * 86_400_000, 'retry at the start of next month')
    t.equal(r.counters[0]!.remaining, 40)
  })

  t.test(`${name}: a cost larger than the limit is refused with no time at which it would fit`, async (t) => {
    const s = await make()
    const r = await s.reserve([gcra('i:tokens:*', 100, 101)], { id: 'i1', ttlMs: 1000 })
    t.notOk(r.ok)
    if (!r.ok) t.equal(r.retryAfterMs, undefined)
  })

  t.test(`${name}: GCRA refills continuously: a spent budget admits one more after one emission interval, not a second burst`, async (t) => {
    const s = await make()
    const items = [gcra('j:requests:*', 4, 1, 400)]
    for (let i = 0; i < 4; i++) t.ok((await s.reserve(items, { id: `j${i}`, ttlMs: 1000 })).ok)
    t.notOk((await s.reserve(items, { id: 'j4', ttlMs: 1000 })).ok)
    await new Promise((r) => setTimeout(r, 130))
    t.ok((await s.reserve(items, { id: 'j5', ttlMs: 1000 })).ok, 'one interval (100 ms) later: one more')
    t.notOk((await s.reserve(items, { id: 'j6', ttlMs: 1000 })).ok, 'but only one')
  })

  t.test(`${name}: other per-caller state is kept under a namespace for its time`, async (t) => {
    const s = await make()
    await s.put('session', 'abc', '{"turn":3}', 60)
    t.equal(await s.get('session', 'abc'), '{"turn":3}')
    t.equal(await s.get('other', 'abc'), undefined)
    await s.delete('session', 'abc')
    t.equal(await s.get('session', 'abc'), undefined)
    await s.put('session', 'short', 'x', 30)
    await new Promise((r) => setTimeout(r, 60))
    t.equal(await s.get('session', 'short'), undefined)
  })

  t.test(`${name}: sets gain members from every writer, none lost to another writing at once, and expire with their time`, async (t) => {
    const s = await make()
    await Promise.all(Array.from({ length: 20 }, (_, i) => s.addMembers('flow', 'k1', [`class-${i % 7}`, `w${i}`], 60_000)))
    const got = await s.members('flow', 'k1')
    t.equal(got.length, 27, 'seven classes and twenty writers')
    t.same(got, [...got].sort(), 'sorted')
    t.same(await s.members('other', 'k1'), [], 'namespaced')
    await s.addMembers('flow', 'brief', ['x'], 30)
    await new Promise((r) => setTimeout(r, 60))
    t.same(await s.members('flow', 'brief'), [], 'expired')
    await s.addMembers('flow', 'brief', ['y'], 60_000)
    t.same(await s.members('flow', 'brief'), ['y'], 'an expired set starts again empty')
  })

  t.test(`${name}: of twenty takers of one value at once exactly one gets it, and it is gone after`, async (t) => {
    const s = await make()
    await s.put('grant', 'g1', 'once', 60_000)
    const got = await Promise.all(Array.from({ length: 20 }, () => s.take('grant', 'g1')))
    t.same(got.filter((v) => v !== undefined), ['once'])
    t.equal(await s.get('grant', 'g1'), undefined)
    t.equal(await s.take('grant', 'g1'), undefined, 'nothing left to take')
    await s.put('grant', 'brief', 'x', 30)
    await new Promise((r) => setTimeout(r, 60))
    t.equal(await s.take('grant', 'brief'), undefined, 'an expired value cannot be taken')
  })

  t.test(`${name}: several values are read in their keys' order, with none where there is none`, async (t) => {
    const s = await make()
    await s.put('many', 'a', '1', 60_000)
    await s.put('many', 'c', '3', 60_000)
    t.same(await s.getMany('many', ['c', 'b', 'a']), ['3', undefined, '1'])
    t.same(await s.getMany('many', []), [])
  })

  t.test(`${name}: an index lists its members by the time they are kept until, drops them after it, and beyond its bound drops the shortest-kept with their values`, async (t) => {
    const s = await make()
    const now = Date.now()
    for (const [m, until] of [['m2', now + 20_000], ['m1', now + 10_000], ['m3', now + 30_000]] as const) {
      await s.put('vals', m, `v-${m}`, 60_000)
      await s.index('idx', 'k', m, until, { max: 3, valuesIn: 'vals' })
    }
    t.same(await s.indexed('idx', 'k'), ['m1', 'm2', 'm3'])
    await s.index('idx', 'k', 'm1', now + 40_000, { max: 3, valuesIn: 'vals' })
    t.same(await s.indexed('idx', 'k'), ['m2', 'm3', 'm1'], 'a member added again moves to its new time')
    await s.put('vals', 'm4', 'v-m4', 60_000)
    await s.index('idx', 'k', 'm4', now + 50_000, { max: 3, valuesIn: 'vals' })
    t.same(await s.indexed('idx', 'k'), ['m3', 'm1', 'm4'], 'beyond the bound the member kept the shortest left')
    t.same(await s.getMany('vals', ['m1', 'm2', 'm3', 'm4']), ['v-m1', undefined, 'v-m3', 'v-m4'], 'its value left with it')
    t.same(await s.indexed('idx', 'other'), [], 'indexes are apart')
    await s.index('idx', 'brief', 'b1', Date.now() + 30, { max: 3 })
    await s.index('idx', 'brief', 'b2', Date.now() + 60_000, { max: 3 })
    await new Promise((r) => setTimeout(r, 60))
    t.same(await s.indexed('idx', 'brief'), ['b2'], 'a member past its time is not listed')
    await Promise.all(Array.from({ length: 20 }, (_, i) => s.index('idx', 'busy', `w${String(i).padStart(2, '0')}`, now + 60_000 + i, { max: 5 })))
    t.same(await s.indexed('idx', 'busy'), ['w15', 'w16', 'w17', 'w18', 'w19'], 'writers at once never push it past its bound')
  })
}

const memories: MemoryStore[] = []
t.teardown(async () => {
  for (const m of memories) await m.close()
})
void behaves(t, 'memory', async () => {
  const m = new MemoryStore()
  memories.push(m)
  return m
})

t.test('redis', async (t) => {
  const redis = await startRedis()
  const stores: RedisStore[] = []
  t.teardown(async () => {
    for (const s of stores) await s.close()
    await redis.stop()
  })
  let n = 0
  await behaves(t, 'redis', async () => {
    const s = new RedisStore({ url: redis.url, keyPrefix: `t${n++}:`, timeoutMs: 500 })
    stores.push(s)
    t.ok(await s.connect())
    return s
  })

  t.test('redis: a store that starts while Redis is down connects once Redis is up', async (t) => {
    const late = await startRedis()
    await late.kill()
    const s = new RedisStore({ url: late.url, keyPrefix: 'late:', timeoutMs: 200 })
    stores.push(s)
    t.equal(await s.connect(), false, 'start-up goes on without Redis')
    await t.rejects(s.reserve([gcra('l:requests:*', 5, 1)], { id: 'l1', ttlMs: 1000 }), StoreUnavailableError)
    await late.restart()
    const until = Date.now() + 5000
    while (!s.connected && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
    t.ok((await s.reserve([gcra('l:requests:*', 5, 1)], { id: 'l2', ttlMs: 1000 })).ok)
    await late.stop()
  })

  t.test('redis: an unreachable Redis fails each command at once, and the store recovers when it is back', async (t) => {
    const s = new RedisStore({ url: redis.url, keyPrefix: 'down:', timeoutMs: 200 })
    stores.push(s)
    await s.connect()
    await redis.kill()
    const t0 = Date.now()
    await t.rejects(s.reserve([gcra('k:requests:*', 5, 1)], { id: 'k1', ttlMs: 1000 }), StoreUnavailableError)
    t.ok(Date.now() - t0 < 1000, 'no waiting for a connection')
    await redis.restart()
    const until = Date.now() + 5000
    while (!s.connected && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
    t.ok((await s.reserve([gcra('k:requests:*', 5, 1)], { id: 'k2', ttlMs: 1000 })).ok, 'the script is loaded again after the restart')
  })
})
