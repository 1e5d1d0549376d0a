/**
 * The state MCP governance keeps between requests, behind small interfaces
 * so that it can move from this process's memory to a shared store: what
 * entered each agent session, and human approvals. Every method may answer
 * at once or with a promise; the memory stores answer at once, the shared
 * ones (in the quota store, Redis when several replicas run) later.
 */
import { LRUCache } from 'lru-cache'
import { GateError } from '../errors.ts'
import type { StateStore } from '../quotas/store.ts'

/** What entered one agent session so far. */
export interface SessionState {
  /** Data classes found in the session's tool results and prompts, sorted. */
  readonly dataClasses: readonly string[]
  /** Whether results of open-world tools (untrusted content) entered it. */
  readonly untrusted: boolean
}

export interface SessionStore {
  get(key: string): SessionState | undefined | Promise<SessionState | undefined>
  /** Adds what entered the session (classes are merged, untrusted stays once set); renews its expiry. */
  record(key: string, dataClasses: Iterable<string>, untrusted: boolean): void | Promise<void>
}

/** Sessions in memory: bounded (least recently used first out) and expiring. */
export function memorySessionStore(opts: { maxSessions: number; ttlMs: number }): SessionStore {
  const cache = new LRUCache<string, SessionState>({ max: opts.maxSessions, ttl: opts.ttlMs, updateAgeOnGet: false })
  return {
    get: (key) => cache.get(key),
    record(key, dataClasses, untrusted) {
      const before = cache.get(key)
      const classes = new Set(before?.dataClasses ?? [])
      for (const c of dataClasses) classes.add(c)
      cache.set(key, { dataClasses: [...classes].sort(), untrusted: (before?.untrusted ?? false) || untrusted })
    },
  }
}

/** The member that marks a session untrusted (data classes are identifiers and never start with `!`). */
const UNTRUSTED = '!untrusted'

/**
 * Sessions in the quota store (`quotas.store`): with Redis, every replica sees
 * what entered a session through any other, and what replicas add at once
 * is merged, never lost (a set per session, added to in one step).
 */
export function sharedSessionStore(store: Pick<StateStore, 'addMembers' | 'members'>, opts: { ttlMs: number }): SessionStore {
  return {
    async get(key) {
      const members = await unavailable('agent session store (get)', () => store.members('mcp-session', key))
      if (members.length === 0) return undefined
      return { dataClasses: members.filter((m) => m !== UNTRUSTED), untrusted: members.includes(UNTRUSTED) }
    },
    async record(key, dataClasses, untrusted) {
      const members = [...dataClasses]
      if (untrusted) members.push(UNTRUSTED)
      // An empty record still renews the session's time.
      await unavailable('agent session store (record)', () => store.addMembers('mcp-session', key, members, opts.ttlMs))
    },
  }
}

/** Runs a call to the shared store; a store that fails refuses the request as unavailable (503, retry), never answers without it. */
export async function unavailable<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof GateError) throw err
    throw new GateError('MG_STATE_UNAVAILABLE', { internal: `${what}: ${(err as Error).message}`, headers: { 'retry-after': '1' }, cause: err })
  }
}

/** One approval: asked for when a call's permit requires one, granted by an approver, used once. */
export interface ApprovalRecord {
  readonly id: string
  /** What the approval is bound to (binding key): caller, user, actor, tool and argument digest. */
  readonly binding: string
  readonly caller: string
  readonly user: string | undefined
  readonly actor: string | undefined
  readonly tool: string
  readonly argumentsDigest: string
  readonly reasons: readonly string[]
  /** The policy set the call was decided with; a grant is good only under the same set. */
  readonly policySetHash: string
  readonly createdAt: number
  readonly expiresAt: number
  /** pending: asked for; granted: an approver granted it; used: the call it allowed ran (kept to recognise a replay). */
  readonly state: 'pending' | 'granted' | 'used'
  /** Who granted it (SPIFFE ID, and the user when the grant came with one). */
  readonly approver?: string
  readonly approverUser?: string
  readonly grantedAt?: number
}

export interface ApprovalStore {
  get(id: string): ApprovalRecord | undefined | Promise<ApprovalRecord | undefined>
  /** The newest approval (pending or granted) bound to `binding`. */
  byBinding(binding: string): ApprovalRecord | undefined | Promise<ApprovalRecord | undefined>
  put(record: ApprovalRecord): void | Promise<void>
  /** Removes the approval and answers it, or undefined when it was already gone: one caller wins (single use). */
  take(id: string): ApprovalRecord | undefined | Promise<ApprovalRecord | undefined>
  /** Every approval still kept, expired ones included until they are dropped. */
  list(): readonly ApprovalRecord[] | Promise<readonly ApprovalRecord[]>
}

/**
 * Approvals in memory, bounded (the oldest dropped first). Expired entries
 * are kept until the bound or a lookup removes them, so a late use is
 * refused as expired rather than as unknown.
 */
export function memoryApprovalStore(opts: { maxEntries: number }): ApprovalStore {
  const byId = new LRUCache<string, ApprovalRecord>({ max: opts.maxEntries, dispose: (r, id) => {
    if (bindings.get(r.binding) === id) bindings.delete(r.binding)
  } })
  const bindings = new Map<string, string>()
  return {
    get: (id) => byId.get(id),
    byBinding(binding) {
      const id = bindings.get(binding)
      return id === undefined ? undefined : byId.get(id)
    },
    put(record) {
      byId.set(record.id, record)
      bindings.set(record.binding, record.id)
    },
    take(id) {
      const r = byId.get(id)
      if (r === undefined) return undefined
      byId.delete(id)
      return r
    },
    list: () => [...byId.values()],
  }
}

/** Where shared approvals live in the quota store: records by id, the newest id per binding, and the index `list` reads. */
const APPROVALS = 'mcp-approval'
const APPROVAL_BINDINGS = 'mcp-approval-binding'
const APPROVAL_INDEX = 'mcp-approvals'
const APPROVAL_INDEX_KEY = 'all'
/** Records read per round trip while listing. */
const LIST_BATCH = 500
const STATES: ReadonlySet<string> = new Set(['pending', 'granted', 'used'])

/** A stored record, read back; anything else in its place is refused, never guessed at. */
function parseApproval(text: string): ApprovalRecord {
  let r: unknown
  try {
    r = JSON.parse(text)
  } catch {
    r = undefined
  }
  const o = r as Partial<Record<keyof ApprovalRecord, unknown>> | undefined
  if (!o || typeof o !== 'object' || typeof o.id !== 'string' || typeof o.binding !== 'string' || typeof o.state !== 'string' || !STATES.has(o.state) || typeof o.expiresAt !== 'number' || typeof o.policySetHash !== 'string') {
    throw new GateError('MG_INTERNAL', { internal: 'the approval store holds a malformed approval record' })
  }
  // JSON leaves out the user and actor of a call without them; they are read back as absent.
  return { ...(o as ApprovalRecord), user: typeof o.user === 'string' ? o.user : undefined, actor: typeof o.actor === 'string' ? o.actor : undefined }
}

/**
 * Approvals in the quota store (`quotas.store`): with Redis, an approval
 * asked for through one replica is listed and granted through any other, and
 * the call it allows runs once, through whichever replica it reaches.
 *
 * - Each approval is a JSON record under its id, kept `ttlMs` past its
 *   expiry, so a late use is refused as expired rather than as unknown (the
 *   memory store keeps expired entries until its bound drops them).
 * - The binding (caller, tool, argument digest) names its newest approval's
 *   id, kept as long.
 * - `take` removes the record in one step (GETDEL on Redis): of replicas
 *   using one grant at once, exactly one gets it.
 * - `list` reads an index of ids (a sorted set scored by the time each record
 *   is kept until) rather than a SCAN over the keyspace: its cost follows the
 *   approvals kept, not the counters and sessions beside them, and it is
 *   bounded by `maxEntries`: beyond it the approvals kept the shortest leave,
 *   their records with them.
 *
 * A store that cannot be reached fails every method with MG_STATE_UNAVAILABLE
 * (503, retry), so the call, the listing or the grant is refused, never
 * decided without it; a malformed record is MG_INTERNAL.
 */
export function sharedApprovalStore(
  store: Pick<StateStore, 'put' | 'get' | 'take' | 'getMany' | 'index' | 'indexed'>,
  opts: { ttlMs: number; maxEntries?: number; now?: () => number },
): ApprovalStore {
  const now = opts.now ?? Date.now
  const max = opts.maxEntries ?? 10_000
  const guard = <T>(what: string, fn: () => Promise<T>): Promise<T> => unavailable(`approval store (${what})`, fn)
  const get = async (id: string) => {
    const text = await store.get(APPROVALS, id)
    return text === undefined ? undefined : parseApproval(text)
  }
  return {
    get: (id) => guard('get', () => get(id)),
    byBinding: (binding) =>
      guard('byBinding', async () => {
        const id = await store.get(APPROVAL_BINDINGS, binding)
        return id === undefined ? undefined : get(id)
      }),
    put: (record) =>
      guard('put', async () => {
        const t = now()
        const keepMs = Math.max(1, record.expiresAt + opts.ttlMs - t)
        await Promise.all([
          store.put(APPROVALS, record.id, JSON.stringify(record), keepMs),
          store.put(APPROVAL_BINDINGS, record.binding, record.id, keepMs),
          store.index(APPROVAL_INDEX, APPROVAL_INDEX_KEY, record.id, t + keepMs, { max, valuesIn: APPROVALS }),
        ])
      }),
    take: (id) =>
      guard('take', async () => {
        const text = await store.take(APPROVALS, id)
        return text === undefined ? undefined : parseApproval(text)
      }),
    list: () =>
      guard('list', async () => {
        const ids = await store.indexed(APPROVAL_INDEX, APPROVAL_INDEX_KEY)
        const out: ApprovalRecord[] = []
        for (let i = 0; i < ids.length; i += LIST_BATCH) {
          for (const text of await store.getMany(APPROVALS, ids.slice(i, i + LIST_BATCH))) if (text !== undefined) out.push(parseApproval(text))
        }
        return out
      }),
  }
}
