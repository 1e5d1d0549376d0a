/**
 * The in-process state store: counters in a Map, checked and charged
 * synchronously (so atomically: nothing else runs in between). The same
 * algorithms as the Redis script (redis.ts); see store.ts.
 */
import { monthOf, type CounterRef, type CounterState, type CounterUsage, type IndexOptions, type ReserveItem, type ReserveOptions, type ReserveResult, type SettleItem, type StateStore } from './store.ts'

type Entry = { tat: number } | { month: string; used: number } | { slots: Map<string, number> }

/** Tolerance for floating-point TATs (milliseconds). */
const EPSILON_MS = 0.001
/** A refused concurrent reservation is told to retry after this long (a slot frees when any request ends). */
export const CONCURRENT_RETRY_MS = 1000

export interface MemoryStoreOptions {
  /** Clock (ms since the epoch); for tests. */
  readonly now?: () => number
  /** How often expired counters and values are dropped (0: never, on a timer). */
  readonly sweepMs?: number
}

export class MemoryStore implements StateStore {
  readonly kind = 'memory' as const
  readonly #counters = new Map<string, Entry>()
  readonly #values = new Map<string, { value: string; expiresAt: number }>()
  readonly #sets = new Map<string, { members: Set<string>; expiresAt: number }>()
  /** Indexes: member → the time it is kept until. */
  readonly #indexes = new Map<string, Map<string, number>>()
  readonly #now: () => number
  readonly #timer: NodeJS.Timeout | undefined

  constructor(opts: MemoryStoreOptions = {}) {
    this.#now = opts.now ?? Date.now
    const sweepMs = opts.sweepMs ?? 10_000
    if (sweepMs > 0) {
      this.#timer = setInterval(() => this.sweep(), sweepMs)
      this.#timer.unref()
    }
  }

  reserve(items: readonly ReserveItem[], opts: ReserveOptions): Promise<ReserveResult> {
    return Promise.resolve(this.reserveNow(items, opts))
  }

  /** `reserve`, answered synchronously. */
  reserveNow(items: readonly ReserveItem[], opts: ReserveOptions): ReserveResult {
    const now = this.#now()
    const month = monthOf(now)
    const counters: CounterState[] = []
    const apply: (() => void)[] = []
    let refused = -1
    let retryAfterMs: number | undefined
    items.forEach((item, i) => {
      const entry = this.#counters.get(item.key)
      let ok: boolean
      let state: CounterState
      let retry: number | undefined
      if (item.algorithm === 'gcra') {
        const T = item.windowMs / item.limit
        const tat = Math.max(entry && 'tat' in entry ? entry.tat : now, now)
        const next = tat + item.cost * T
        ok = next - now <= item.windowMs + EPSILON_MS
        if (ok) {
          state = { remaining: Math.max(0, Math.floor((item.windowMs - (next - now)) / T + 1e-9)), resetMs: Math.ceil(next - now) }
          apply.push(() => this.#counters.set(item.key, { tat: next }))
        } else {
          state = { remaining: Math.max(0, Math.floor((item.windowMs - (tat - now)) / T + 1e-9)), resetMs: Math.ceil(tat - now) }
          retry = item.cost > item.limit ? undefined : Math.ceil(next - now - item.windowMs)
        }
      } else if (item.algorithm === 'month') {
        const used = entry && 'month' in entry && entry.month === month.id ? entry.used : 0
        ok = used + item.cost <= item.limit
        state = { remaining: Math.max(0, item.limit - used - (ok ? item.cost : 0)), resetMs: month.endMs - now }
        if (ok) apply.push(() => this.#counters.set(item.key, { month: month.id, used: used + item.cost }))
        else retry = item.cost > item.limit ? undefined : month.endMs - now
      } else {
        const slots = entry && 'slots' in entry ? entry.slots : new Map<string, number>()
        for (const [id, exp] of slots) if (exp <= now) slots.delete(id)
        ok = slots.size + 1 <= item.limit
        state = { remaining: Math.max(0, item.limit - slots.size - (ok ? 1 : 0)), resetMs: 0 }
        if (ok)
          apply.push(() => {
            slots.set(opts.id, now + opts.ttlMs)
            this.#counters.set(item.key, { slots })
          })
        else retry = CONCURRENT_RETRY_MS
      }
      counters.push(state)
      if (!ok && refused < 0) {
        refused = i
        retryAfterMs = retry
      }
    })
    if (refused >= 0) return { ok: false, refused, retryAfterMs, counters }
    for (const a of apply) a()
    return { ok: true, counters }
  }

  settle(items: readonly SettleItem[], id: string): Promise<void> {
    this.settleNow(items, id)
    return Promise.resolve()
  }

  settleNow(items: readonly SettleItem[], id: string): void {
    const now = this.#now()
    const month = monthOf(now)
    for (const item of items) {
      const entry = this.#counters.get(item.key)
      if (item.algorithm === 'gcra') {
        const T = item.windowMs / item.limit
        const tat = entry && 'tat' in entry ? entry.tat : now
        if (item.delta > 0) this.#counters.set(item.key, { tat: Math.max(tat, now) + item.delta * T })
        else if (item.delta < 0 && tat > now) this.#counters.set(item.key, { tat: Math.max(now, tat + item.delta * T) })
      } else if (item.algorithm === 'month') {
        if (item.delta !== 0) {
          const used = entry && 'month' in entry && entry.month === month.id ? entry.used : 0
          this.#counters.set(item.key, { month: month.id, used: Math.max(0, used + item.delta) })
        }
      } else if (entry && 'slots' in entry) {
        entry.slots.delete(id)
      }
    }
  }

  usage(refOf: (key: string) => CounterRef | undefined): Promise<CounterUsage[]> {
    const now = this.#now()
    const month = monthOf(now)
    const out: CounterUsage[] = []
    for (const [key, entry] of this.#counters) {
      const ref = refOf(key)
      if (!ref) continue
      let used = 0
      if ('tat' in entry) used = Math.max(0, Math.ceil(((entry.tat - now) * ref.limit) / ref.windowMs - 1e-9))
      else if ('month' in entry) used = entry.month === month.id ? entry.used : 0
      else used = [...entry.slots.values()].filter((exp) => exp > now).length
      if (used > 0) out.push({ key, algorithm: ref.algorithm, used })
    }
    return Promise.resolve(out)
  }

  put(namespace: string, key: string, value: string, ttlMs: number): Promise<void> {
    this.#values.set(`${namespace}\n${key}`, { value, expiresAt: this.#now() + ttlMs })
    return Promise.resolve()
  }

  get(namespace: string, key: string): Promise<string | undefined> {
    const v = this.#values.get(`${namespace}\n${key}`)
    return Promise.resolve(v && v.expiresAt > this.#now() ? v.value : undefined)
  }

  delete(namespace: string, key: string): Promise<void> {
    this.#values.delete(`${namespace}\n${key}`)
    return Promise.resolve()
  }

  addMembers(namespace: string, key: string, members: readonly string[], ttlMs: number): Promise<void> {
    const k = `${namespace}\n${key}`
    const now = this.#now()
    const e = this.#sets.get(k)
    const set = e && e.expiresAt > now ? e.members : new Set<string>()
    for (const m of members) set.add(m)
    this.#sets.set(k, { members: set, expiresAt: now + ttlMs })
    return Promise.resolve()
  }

  members(namespace: string, key: string): Promise<string[]> {
    const e = this.#sets.get(`${namespace}\n${key}`)
    return Promise.resolve(e && e.expiresAt > this.#now() ? [...e.members].sort() : [])
  }

  take(namespace: string, key: string): Promise<string | undefined> {
    const k = `${namespace}\n${key}`
    const v = this.#values.get(k)
    this.#values.delete(k)
    return Promise.resolve(v && v.expiresAt > this.#now() ? v.value : undefined)
  }

  getMany(namespace: string, keys: readonly string[]): Promise<(string | undefined)[]> {
    const now = this.#now()
    return Promise.resolve(
      keys.map((key) => {
        const v = this.#values.get(`${namespace}\n${key}`)
        return v && v.expiresAt > now ? v.value : undefined
      }),
    )
  }

  index(namespace: string, key: string, member: string, untilMs: number, opts: IndexOptions): Promise<void> {
    const k = `${namespace}\n${key}`
    const now = this.#now()
    const index = this.#indexes.get(k) ?? new Map<string, number>()
    for (const [m, until] of index) if (until <= now) index.delete(m)
    index.set(member, untilMs)
    if (index.size > opts.max) {
      const first = [...index].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1)).slice(0, index.size - opts.max)
      for (const [m] of first) {
        index.delete(m)
        if (opts.valuesIn !== undefined) this.#values.delete(`${opts.valuesIn}\n${m}`)
      }
    }
    this.#indexes.set(k, index)
    return Promise.resolve()
  }

  indexed(namespace: string, key: string): Promise<string[]> {
    const now = this.#now()
    const index = this.#indexes.get(`${namespace}\n${key}`)
    if (!index) return Promise.resolve([])
    return Promise.resolve(
      [...index]
        .filter(([, until]) => until > now)
        .sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1))
        .map(([m]) => m),
    )
  }

  /** Drops counters back at their full limit, old months, empty slot sets, expired values and index members past their time. */
  sweep(): void {
    const now = this.#now()
    const month = monthOf(now).id
    for (const [key, e] of this.#counters) {
      if ('tat' in e ? e.tat <= now : 'month' in e ? e.month !== month : [...e.slots.values()].every((exp) => exp <= now)) this.#counters.delete(key)
    }
    for (const [key, v] of this.#values) if (v.expiresAt <= now) this.#values.delete(key)
    for (const [key, v] of this.#sets) if (v.expiresAt <= now) this.#sets.delete(key)
    for (const [key, index] of this.#indexes) {
      for (const [m, until] of index) if (until <= now) index.delete(m)
      if (index.size === 0) this.#indexes.delete(key)
    }
  }

  /** Counters held (for tests and the sweep). */
  get size(): number {
    return this.#counters.size
  }

  close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    return Promise.resolve()
  }
}
