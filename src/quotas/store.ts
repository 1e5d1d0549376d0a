/**
 * Where per-caller state lives: quota counters today, and any other state
 * that several replicas must agree on (an agent's session, say) tomorrow.
 * Two implementations: this process's memory (memory.ts) and Redis
 * (redis.ts), with the same semantics.
 *
 * Quota counters. Every counter has one of three algorithms:
 *
 * - `gcra` (windows of a second, minute, hour or day): the generic cell rate
 *   algorithm. The counter keeps one number, the theoretical arrival time
 *   (TAT); each unit of cost moves it `window / limit` ms ahead, and a
 *   reservation is admitted when the TAT it leads to is at most one window
 *   ahead of now. Spending refills continuously: there is no bucket edge
 *   at which a second full limit becomes available at once.
 * - `month`: a calendar month in UTC; the count starts again at 00:00 UTC on
 *   the first day of each month.
 * - `concurrent`: reservations in flight, each with an expiry (the longest a
 *   request may run), so one whose release never comes stops counting.
 *
 * `reserve` checks every counter of a request and, only if all admit it,
 * charges all of them: in one step (one Redis round trip, one Lua script),
 * so no two replicas can both spend the last of a budget.
 */

export type CounterAlgorithm = 'gcra' | 'month' | 'concurrent'

/** One counter of one rule, for one partition (the rule's `per` facts). */
export interface CounterRef {
  /** The store key (without the store's own prefix): `<rule>:<kind>:<partition>`. */
  readonly key: string
  readonly algorithm: CounterAlgorithm
  readonly limit: number
  /** gcra: the window; month: ignored; concurrent: ignored. */
  readonly windowMs: number
}

export interface ReserveItem extends CounterRef {
  /** Units to charge: requests, tokens, or 1 for concurrent. */
  readonly cost: number
}

export interface SettleItem extends CounterRef {
  /** Units to add (positive: more was used than reserved) or give back (negative). Concurrent counters release the reservation whatever the delta. */
  readonly delta: number
}

export interface ReserveOptions {
  /** Identifies the reservation (concurrent counters keep it until released). */
  readonly id: string
  /** When a concurrent reservation stops counting if nobody releases it. */
  readonly ttlMs: number
}

/** The state of each counter after a reservation (admitted) or at the refusal. */
export interface CounterState {
  /** Units left now (after the charge when admitted). */
  readonly remaining: number
  /** Milliseconds until the counter is back to its full limit. */
  readonly resetMs: number
}

export type ReserveResult =
  | { readonly ok: true; readonly counters: readonly CounterState[] }
  | {
      readonly ok: false
      /** Index (into the items) of the first counter that refused. */
      readonly refused: number
      /** Milliseconds until the refused cost could be admitted; undefined when it never can (cost above the limit). */
      readonly retryAfterMs: number | undefined
      readonly counters: readonly CounterState[]
    }

/** One counter's current use, for `modelgate quota show`. */
export interface CounterUsage {
  readonly key: string
  readonly algorithm: CounterAlgorithm
  /** Units in use now (gcra: the part of the limit not yet refilled). */
  readonly used: number
}

/** The store could not be asked (unreachable, timed out, refused the command). */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StoreUnavailableError'
  }
}

export interface IndexOptions {
  /** Most members kept. */
  readonly max: number
  /** The namespace whose values (one per member, the member as key) leave with members dropped for the bound. */
  readonly valuesIn?: string
}

export interface StateStore {
  readonly kind: 'memory' | 'redis'
  /** Checks every item and charges all of them only if every one admits its cost. Throws StoreUnavailableError. */
  reserve(items: readonly ReserveItem[], opts: ReserveOptions): Promise<ReserveResult>
  /** Corrects the charges of a reservation and releases its concurrent slots. Throws StoreUnavailableError. */
  settle(items: readonly SettleItem[], id: string): Promise<void>
  /** Current use of every counter of the given algorithms' rules (`modelgate quota show`). */
  usage(refs: (key: string) => CounterRef | undefined): Promise<CounterUsage[]>
  /** Per-caller state beyond quotas: a value under a namespaced key, kept for `ttlMs`. */
  put(namespace: string, key: string, value: string, ttlMs: number): Promise<void>
  get(namespace: string, key: string): Promise<string | undefined>
  delete(namespace: string, key: string): Promise<void>
  /** Adds members to the set under a namespaced key, in one step (replicas adding at once lose none), and keeps it for `ttlMs` from now. */
  addMembers(namespace: string, key: string, members: readonly string[], ttlMs: number): Promise<void>
  /** The members of that set, sorted; empty when there is none or it expired. */
  members(namespace: string, key: string): Promise<string[]>
  /** The value under a namespaced key, removed in the same step: of callers taking it at once (on any replica) exactly one gets it. */
  take(namespace: string, key: string): Promise<string | undefined>
  /** The values under several keys of one namespace, in their order (undefined where there is none). */
  getMany(namespace: string, keys: readonly string[]): Promise<(string | undefined)[]>
  /**
   * Adds `member` to the index under a namespaced key, or moves its time, to
   * be kept until `untilMs` (ms since the epoch, this process's clock). In the
   * same step members whose time has passed leave, and beyond `max` members
   * those whose time ends first leave too; the values of members that left
   * for the bound, under namespace `valuesIn` with the member as key, are
   * deleted with them (right after, not in the same step).
   */
  index(namespace: string, key: string, member: string, untilMs: number, opts: IndexOptions): Promise<void>
  /** The members of that index whose time has not passed, the one whose time ends first first. */
  indexed(namespace: string, key: string): Promise<string[]>
  close(): Promise<void>
}

/** The first instant of the month after `now` (UTC), and the month's id (`YYYY-MM`). */
export function monthOf(now: number): { readonly id: string; readonly endMs: number; readonly lengthMs: number } {
  const d = new Date(now)
  const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)
  const end = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)
  return { id: `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`, endMs: end, lengthMs: end - start }
}
