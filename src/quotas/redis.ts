/**
 * The Redis state store: the counters of every replica in one Redis. A
 * reservation is one round trip: a Lua script checks every counter of the
 * request and charges them all only if each admits its cost (Redis runs a
 * script alone, so replicas never jointly overspend). Settling is another
 * script. The scripts are sent once and then run by their SHA (EVALSHA; a
 * Redis that restarted and forgot them gets them again).
 *
 * Time comes from Redis (TIME), so replicas with skewed clocks agree; the
 * calendar month is the client's (it only matters at a month's edge), and so
 * are the times of index members (they decide only when a member stops being
 * listed; the values they name expire by Redis's own clock).
 *
 * Commands never wait in a queue for a connection: while Redis is
 * unreachable each one fails at once (StoreUnavailableError) and the client
 * keeps reconnecting in the background.
 *
 * Keys: `<prefix>{q}:<counter>` for counters (one hash slot, so a Redis
 * Cluster takes the multi-key script), `<prefix>{s}:<namespace>:<key>` for
 * other state (values, sets, and indexes: sorted sets scored by the time each
 * member is kept until), also one hash slot, so MGET and scripts serve them.
 */
import { readFileSync } from 'node:fs'
import { Redis, type RedisOptions } from 'ioredis'
import type { Logger } from '../log.ts'
import { monthOf, StoreUnavailableError, type CounterRef, type CounterState, type CounterUsage, type IndexOptions, type ReserveItem, type ReserveOptions, type ReserveResult, type SettleItem, type StateStore } from './store.ts'
import { CONCURRENT_RETRY_MS } from './memory.ts'

const RESERVE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local ttl = tonumber(ARGV[2])
local month = ARGV[3]
local monthEnd = tonumber(ARGV[4])
local n = #KEYS
local refused = 0
local retry = -1
local remaining = {}
local reset = {}
local nexts = {}
local useds = {}
for i = 1, n do
  local b = 4 + (i - 1) * 4
  local algo = ARGV[b + 1]
  local limit = tonumber(ARGV[b + 2])
  local win = tonumber(ARGV[b + 3])
  local cost = tonumber(ARGV[b + 4])
  local key = KEYS[i]
  local ok = false
  local ra = -1
  if algo == 'gcra' then
    local T = win / limit
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    local nt = tat + cost * T
    if nt - now <= win + 0.001 then
      ok = true
      remaining[i] = math.max(0, math.floor((win - (nt - now)) / T + 1e-9))
      reset[i] = math.ceil(nt - now)
      nexts[i] = nt
    else
      remaining[i] = math.max(0, math.floor((win - (tat - now)) / T + 1e-9))
      reset[i] = math.ceil(tat - now)
      if cost <= limit then ra = math.ceil(nt - now - win) end
    end
  elseif algo == 'month' then
    local v = redis.call('HMGET', key, 'm', 'u')
    local used = 0
    if v[1] == month then used = tonumber(v[2]) end
    ok = used + cost <= limit
    local after = used
    if ok then after = used + cost end
    remaining[i] = math.max(0, limit - after)
    reset[i] = monthEnd - now
    useds[i] = after
    if not ok and cost <= limit then ra = monthEnd - now end
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local c = redis.call('ZCARD', key)
    ok = c + 1 <= limit
    local after = c
    if ok then after = c + 1 end
    remaining[i] = math.max(0, limit - after)
    reset[i] = 0
    if not ok then ra = tonumber(ARGV[5 + n * 4]) end
  end
  if not ok and refused == 0 then
    refused = i
    retry = ra
  end
end
if refused == 0 then
  for i = 1, n do
    local b = 4 + (i - 1) * 4
    local algo = ARGV[b + 1]
    local key = KEYS[i]
    if algo == 'gcra' then
      redis.call('SET', key, string.format('%.3f', nexts[i]), 'PX', math.ceil(nexts[i] - now) + 1000)
    elseif algo == 'month' then
      redis.call('HSET', key, 'm', month, 'u', useds[i])
      redis.call('PEXPIREAT', key, monthEnd + 86400000)
    else
      redis.call('ZADD', key, now + ttl, id)
      redis.call('PEXPIRE', key, ttl + 1000)
    end
  end
end
local out = { refused, retry }
for i = 1, n do
  out[#out + 1] = remaining[i]
  out[#out + 1] = reset[i]
end
return out
`

const SETTLE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local month = ARGV[2]
local monthEnd = tonumber(ARGV[3])
for i = 1, #KEYS do
  local b = 3 + (i - 1) * 4
  local algo = ARGV[b + 1]
  local limit = tonumber(ARGV[b + 2])
  local win = tonumber(ARGV[b + 3])
  local delta = tonumber(ARGV[b + 4])
  local key = KEYS[i]
  if algo == 'gcra' then
    local T = win / limit
    local tat = tonumber(redis.call('GET', key) or '0')
    local nt = nil
    if delta > 0 then
      if tat < now then tat = now end
      nt = tat + delta * T
    elseif delta < 0 and tat > now then
      nt = math.max(now, tat + delta * T)
    end
    if nt ~= nil then
      if nt > now then
        redis.call('SET', key, string.format('%.3f', nt), 'PX', math.ceil(nt - now) + 1000)
      else
        redis.call('DEL', key)
      end
    end
  elseif algo == 'month' then
    if delta ~= 0 then
      local v = redis.call('HMGET', key, 'm', 'u')
      local used = 0
      if v[1] == month then used = tonumber(v[2]) end
      redis.call('HSET', key, 'm', month, 'u', math.max(0, used + delta))
      redis.call('PEXPIREAT', key, monthEnd + 86400000)
    end
  else
    redis.call('ZREM', key, id)
  end
end
return 1
`

/** Adds a member to a bounded, expiring index (a sorted set scored by the time each member is kept until); answers the members dropped for the bound. */
const INDEX = `
local key = KEYS[1]
redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[3])
redis.call('ZADD', key, ARGV[2], ARGV[1])
local over = redis.call('ZCARD', key) - tonumber(ARGV[4])
local gone = {}
if over > 0 then
  local popped = redis.call('ZPOPMIN', key, over)
  for i = 1, #popped, 2 do gone[#gone + 1] = popped[i] end
end
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if #last == 2 then redis.call('PEXPIREAT', key, math.ceil(tonumber(last[2])) + tonumber(ARGV[5])) end
return gone
`

/** How long an index outlives its last member's time, so clocks a little apart never drop it early. */
const INDEX_GRACE_MS = 60_000

export interface RedisStoreOptions {
  readonly url: string
  readonly username?: string
  readonly password?: string
  readonly tls?: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer; readonly servername?: string }
  readonly keyPrefix: string
  readonly timeoutMs: number
  readonly logger?: Logger
}

type ScriptClient = Redis & {
  mgReserve(numKeys: number, ...args: (string | number)[]): Promise<(number | string)[]>
  mgSettle(numKeys: number, ...args: (string | number)[]): Promise<number>
  mgIndex(numKeys: number, ...args: (string | number)[]): Promise<string[]>
}

/** Options for a Redis configured under `quotas.redis`: the password and TLS files are read here, once. */
export function redisOptionsFromConfig(
  c: { url: string; passwordFile: string; username: string; tls: { caFile: string; certFile: string; keyFile: string; serverName: string }; keyPrefix: string; timeoutMs: number },
  resolve: (p: string) => string,
): Omit<RedisStoreOptions, 'logger'> {
  const read = (p: string) => readFileSync(resolve(p))
  const tlsWanted = c.url.startsWith('rediss://') || c.tls.caFile !== '' || c.tls.certFile !== ''
  return {
    url: c.url,
    ...(c.username ? { username: c.username } : {}),
    ...(c.passwordFile ? { password: read(c.passwordFile).toString('utf8').trim() } : {}),
    ...(tlsWanted
      ? {
          tls: {
            ...(c.tls.caFile ? { ca: read(c.tls.caFile) } : {}),
            ...(c.tls.certFile ? { cert: read(c.tls.certFile), key: read(c.tls.keyFile) } : {}),
            ...(c.tls.serverName ? { servername: c.tls.serverName } : {}),
          },
        }
      : {}),
    keyPrefix: c.keyPrefix,
    timeoutMs: c.timeoutMs,
  }
}

export class RedisStore implements StateStore {
  readonly kind = 'redis' as const
  readonly #client: ScriptClient
  readonly #prefix: string
  readonly #logger: Logger | undefined
  #up = false

  constructor(opts: RedisStoreOptions) {
    this.#prefix = opts.keyPrefix
    this.#logger = opts.logger
    const options: RedisOptions = {
      lazyConnect: true,
      // Fail at once while disconnected; never hold a request waiting for Redis to come back.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: opts.timeoutMs,
      connectTimeout: Math.max(opts.timeoutMs, 1000),
      // Keep reconnecting, at most once a second.
      retryStrategy: (times) => Math.min(50 * times, 1000),
      ...(opts.username ? { username: opts.username } : {}),
      ...(opts.password ? { password: opts.password } : {}),
      ...(opts.tls ? { tls: { ...opts.tls } } : {}),
    }
    const client = new Redis(opts.url, options) as ScriptClient
    client.defineCommand('mgReserve', { lua: RESERVE })
    client.defineCommand('mgSettle', { lua: SETTLE })
    client.defineCommand('mgIndex', { lua: INDEX })
    client.on('ready', () => {
      if (!this.#up) this.#logger?.info('quota store connected', { store: 'redis' })
      this.#up = true
    })
    client.on('error', (err: Error) => {
      if (this.#up) this.#logger?.warn('quota store unreachable', { store: 'redis', error: err.message })
      this.#up = false
    })
    client.on('end', () => {
      this.#up = false
    })
    this.#client = client
  }

  /** Connects (the first time); resolves either way: requests meet an unreachable Redis through `onStoreError`. */
  async connect(): Promise<boolean> {
    try {
      await this.#client.connect()
      return true
    } catch (err) {
      this.#logger?.warn('quota store not reachable at start-up; requests follow quotas.onStoreError until it is', { store: 'redis', error: (err as Error).message })
      return false
    }
  }

  get connected(): boolean {
    return this.#client.status === 'ready'
  }

  #key(k: string): string {
    return `${this.#prefix}{q}:${k}`
  }

  async reserve(items: readonly ReserveItem[], opts: ReserveOptions): Promise<ReserveResult> {
    const month = monthOf(Date.now())
    const args: (string | number)[] = [...items.map((i) => this.#key(i.key)), opts.id, opts.ttlMs, month.id, month.endMs]
    for (const i of items) args.push(i.algorithm, i.limit, i.windowMs, i.cost)
    args.push(CONCURRENT_RETRY_MS)
    const out = await this.#run(() => this.#client.mgReserve(items.length, ...args))
    const counters: CounterState[] = []
    for (let i = 0; i < items.length; i++) counters.push({ remaining: Number(out[2 + 2 * i]), resetMs: Math.max(0, Number(out[3 + 2 * i])) })
    const refused = Number(out[0])
    if (refused === 0) return { ok: true, counters }
    const retry = Number(out[1])
    return { ok: false, refused: refused - 1, retryAfterMs: retry < 0 ? undefined : retry, counters }
  }

  async settle(items: readonly SettleItem[], id: string): Promise<void> {
    if (items.length === 0) return
    const month = monthOf(Date.now())
    const args: (string | number)[] = [...items.map((i) => this.#key(i.key)), id, month.id, month.endMs]
    for (const i of items) args.push(i.algorithm, i.limit, i.windowMs, i.delta)
    await this.#run(() => this.#client.mgSettle(items.length, ...args))
  }

  async usage(refOf: (key: string) => CounterRef | undefined): Promise<CounterUsage[]> {
    const prefix = this.#key('')
    const keys: string[] = []
    await this.#run(async () => {
      let cursor = '0'
      do {
        const [next, found] = await this.#client.scan(cursor, 'MATCH', `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', 1000)
        cursor = next
        keys.push(...found)
      } while (cursor !== '0')
    })
    const now = await this.#run(async () => {
      const [s, us] = await this.#client.time()
      return Number(s) * 1000 + Math.floor(Number(us) / 1000)
    })
    const month = monthOf(now).id
    const out: CounterUsage[] = []
    for (const full of keys.sort()) {
      const key = full.slice(prefix.length)
      const ref = refOf(key)
      if (!ref) continue
      let used = 0
      if (ref.algorithm === 'gcra') {
        const tat = Number((await this.#run(() => this.#client.get(full))) ?? 0)
        used = Math.max(0, Math.ceil(((tat - now) * ref.limit) / ref.windowMs - 1e-9))
      } else if (ref.algorithm === 'month') {
        const [m, u] = await this.#run(() => this.#client.hmget(full, 'm', 'u'))
        used = m === month ? Number(u ?? 0) : 0
      } else {
        used = await this.#run(() => this.#client.zcount(full, `(${now}`, '+inf'))
      }
      if (used > 0) out.push({ key, algorithm: ref.algorithm, used })
    }
    return out
  }

  async put(namespace: string, key: string, value: string, ttlMs: number): Promise<void> {
    await this.#run(() => this.#client.set(`${this.#prefix}{s}:${namespace}:${key}`, value, 'PX', Math.max(1, Math.ceil(ttlMs))))
  }

  async get(namespace: string, key: string): Promise<string | undefined> {
    return (await this.#run(() => this.#client.get(`${this.#prefix}{s}:${namespace}:${key}`))) ?? undefined
  }

  async delete(namespace: string, key: string): Promise<void> {
    await this.#run(() => this.#client.del(`${this.#prefix}{s}:${namespace}:${key}`))
  }

  async addMembers(namespace: string, key: string, members: readonly string[], ttlMs: number): Promise<void> {
    const full = `${this.#prefix}{s}:${namespace}:${key}`
    const ttl = Math.max(1, Math.ceil(ttlMs))
    // One transaction: the members and the renewed expiry land together, and SADD merges with what other replicas added.
    const tx = this.#client.multi()
    if (members.length > 0) tx.sadd(full, ...members)
    tx.pexpire(full, ttl)
    const replies = await this.#run(() => tx.exec())
    const failed = replies?.find(([err]) => err !== null)
    if (replies === null || failed) throw new StoreUnavailableError(`redis: ${failed ? (failed[0] as Error).message : 'transaction aborted'}`)
  }

  async members(namespace: string, key: string): Promise<string[]> {
    return (await this.#run(() => this.#client.smembers(`${this.#prefix}{s}:${namespace}:${key}`))).sort()
  }

  async take(namespace: string, key: string): Promise<string | undefined> {
    // GETDEL (Redis 6.2+): Redis runs it alone, so one of the callers taking at once gets the value.
    return (await this.#run(() => this.#client.getdel(this.#state(namespace, key)))) ?? undefined
  }

  async getMany(namespace: string, keys: readonly string[]): Promise<(string | undefined)[]> {
    if (keys.length === 0) return []
    // All state keys share the `{s}` hash slot, so one MGET serves them on a Redis Cluster too.
    return (await this.#run(() => this.#client.mget(keys.map((k) => this.#state(namespace, k))))).map((v) => v ?? undefined)
  }

  async index(namespace: string, key: string, member: string, untilMs: number, opts: IndexOptions): Promise<void> {
    const gone = await this.#run(() => this.#client.mgIndex(1, this.#state(namespace, key), member, Math.ceil(untilMs), Date.now(), opts.max, INDEX_GRACE_MS))
    if (opts.valuesIn !== undefined && gone.length > 0) {
      const valuesIn = opts.valuesIn
      await this.#run(() => this.#client.del(...gone.map((m) => this.#state(valuesIn, m))))
    }
  }

  async indexed(namespace: string, key: string): Promise<string[]> {
    return this.#run(() => this.#client.zrangebyscore(this.#state(namespace, key), `(${Date.now()}`, '+inf'))
  }

  #state(namespace: string, key: string): string {
    return `${this.#prefix}{s}:${namespace}:${key}`
  }

  async #run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#client.status !== 'ready') throw new StoreUnavailableError(`redis is ${this.#client.status}`)
    try {
      return await fn()
    } catch (err) {
      throw new StoreUnavailableError(`redis: ${(err as Error).message}`, { cause: err })
    }
  }

  async close(): Promise<void> {
    try {
      await this.#client.quit()
    } catch {
      this.#client.disconnect()
    }
  }
}
