/**
 * The state MCP governance keeps between requests, behind small interfaces
 * so that it can move from this process's memory to a shared store: what
 * entered each agent session, and human approvals. Every method may answer
 * at once or with a promise; the memory stores answer at once.
 */
import { LRUCache } from 'lru-cache'
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
      const members = await store.members('mcp-session', key)
      if (members.length === 0) return undefined
      return { dataClasses: members.filter((m) => m !== UNTRUSTED), untrusted: members.includes(UNTRUSTED) }
    },
    async record(key, dataClasses, untrusted) {
      const members = [...dataClasses]
      if (untrusted) members.push(UNTRUSTED)
      // An empty record still renews the session's time.
      await store.addMembers('mcp-session', key, members, opts.ttlMs)
    },
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
