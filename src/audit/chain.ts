/**
 * The hash chain over audit records. Every record (one per request, plus a
 * chain-end record at a clean shutdown) carries its chain id, its position
 * `seq` (1, 2, 3… without gaps), the hash of the previous record and its own
 * hash: SHA-256 over a canonical JSON array of
 *
 *   ["modelgate-audit-v1", traceId, spanId, startNanos, endNanos, [[key, value], …]]
 *
 * where the attributes are every attribute of the record except
 * `modelgate.audit.hash` itself, sorted by key. Values are JSON scalars or
 * arrays, so the same hash comes out of the record as built, the JSON-lines
 * record and an OTLP/JSON export (whose integers arrive as strings).
 *
 * A deleted record shows as a gap in `seq` and a broken `prev_hash` link; an
 * edited record no longer matches its hash. The chain is not signed: someone
 * who can rewrite every later record can rebuild it, which is why the records
 * should land somewhere the writer of the spool or file cannot change (the
 * collector), and why the chain head is logged at shutdown.
 */
import { hash, randomUUID } from 'node:crypto'
import { MG_AUDIT_CHAIN_ID, MG_AUDIT_FINAL, MG_AUDIT_HASH, MG_AUDIT_PREV_HASH, MG_AUDIT_SEQ, MG_AUDIT_VERSION, RECORD_VERSION, SPAN_CHAIN_END } from './attributes.ts'
import type { RecordValue, SpanRecord } from './record.ts'

export const GENESIS_HASH = '0'.repeat(64)
const DOMAIN = 'modelgate-audit-v1'

export interface RecordIdentity {
  readonly traceId: string
  readonly spanId: string
  readonly start: string
  readonly end: string
}

/** The hash of a record's content (its own hash attribute excluded). */
export function recordHash(id: RecordIdentity, attributes: Readonly<Record<string, RecordValue | undefined>>): string {
  const pairs: [string, RecordValue][] = []
  for (const k of Object.keys(attributes).sort()) {
    const v = attributes[k]
    if (k !== MG_AUDIT_HASH && v !== undefined) pairs.push([k, v])
  }
  return hash('sha256', JSON.stringify([DOMAIN, id.traceId, id.spanId, id.start, id.end, pairs]))
}

/** One process's chain. Appending is synchronous, so records get their seq in close() order. */
export class HashChain {
  readonly id: string
  #seq = 0
  #head = GENESIS_HASH

  constructor(id: string = randomUUID()) {
    this.id = id
  }

  get seq(): number {
    return this.#seq
  }

  get head(): string {
    return this.#head
  }

  /**
   * Adds the chain attributes to `attributes` (mutating it) and returns them.
   * Call with the record's final attributes: nothing may change afterwards.
   */
  append(id: RecordIdentity, attributes: Record<string, RecordValue>): { seq: number; hash: string } {
    const seq = this.#seq + 1
    attributes[MG_AUDIT_VERSION] = RECORD_VERSION
    attributes[MG_AUDIT_CHAIN_ID] = this.id
    attributes[MG_AUDIT_SEQ] = seq
    attributes[MG_AUDIT_PREV_HASH] = this.#head
    const hash = recordHash(id, attributes)
    attributes[MG_AUDIT_HASH] = hash
    this.#seq = seq
    this.#head = hash
    return { seq, hash }
  }
}

// ---- verification -------------------------------------------------------------

export type ChainProblemKind = 'edited' | 'missing' | 'missing-head' | 'conflict' | 'broken-link'

export interface ChainProblem {
  readonly chainId: string
  readonly kind: ChainProblemKind
  /** First and last seq concerned. */
  readonly from: number
  readonly to: number
  readonly message: string
}

export interface ChainSummary {
  readonly chainId: string
  readonly records: number
  readonly firstSeq: number
  readonly lastSeq: number
  /** True when the chain-end record is present (the process shut down cleanly and nothing after it is missing). */
  readonly ended: boolean
  readonly head: string
}

export interface VerifyResult {
  readonly chains: readonly ChainSummary[]
  readonly problems: readonly ChainProblem[]
  /** Records without chain attributes (child stage spans, foreign spans): not part of any chain. */
  readonly unchained: number
  /** Identical copies of a record seen more than once (re-sent after a retry); harmless. */
  readonly duplicates: number
}

export interface VerifyOptions {
  /** Accept chains whose first record is not seq 1 (e.g. a file that starts mid-way). */
  readonly partial?: boolean
}

/** True when the record is part of a chain (carries seq and hash). */
export function isChained(r: SpanRecord): boolean {
  return typeof r.attributes[MG_AUDIT_SEQ] === 'number' && typeof r.attributes[MG_AUDIT_CHAIN_ID] === 'string'
}

/** True for the chain-end record. */
export function isChainEnd(r: SpanRecord): boolean {
  return r.name === SPAN_CHAIN_END && r.attributes[MG_AUDIT_FINAL] === true
}

/** What the verifier keeps per record: enough to check links without holding the record. */
interface Entry {
  readonly spanId: string
  readonly stored: string | undefined
  readonly actual: string
  readonly prev: string | undefined
  readonly end: boolean
}

/**
 * Checks chains record by record (so files of any size can be verified in
 * bounded memory per record): hashes, sequence and links.
 */
export class ChainVerifier {
  readonly #opts: VerifyOptions
  readonly #chains = new Map<string, Map<number, Entry[]>>()
  #unchained = 0

  constructor(opts: VerifyOptions = {}) {
    this.#opts = opts
  }

  add(r: SpanRecord): void {
    if (!isChained(r)) {
      this.#unchained++
      return
    }
    const chainId = r.attributes[MG_AUDIT_CHAIN_ID] as string
    const seq = r.attributes[MG_AUDIT_SEQ] as number
    const stored = r.attributes[MG_AUDIT_HASH]
    const prev = r.attributes[MG_AUDIT_PREV_HASH]
    const entry: Entry = {
      spanId: r.spanId,
      stored: typeof stored === 'string' ? stored : undefined,
      actual: recordHash(r, r.attributes),
      prev: typeof prev === 'string' ? prev : undefined,
      end: isChainEnd(r),
    }
    let chain = this.#chains.get(chainId)
    if (!chain) this.#chains.set(chainId, (chain = new Map()))
    const list = chain.get(seq)
    if (list) list.push(entry)
    else chain.set(seq, [entry])
  }

  result(): VerifyResult {
    const problems: ChainProblem[] = []
    const chains: ChainSummary[] = []
    let duplicates = 0
    for (const [chainId, bySeq] of [...this.#chains].sort((a, b) => a[0].localeCompare(b[0]))) {
      const seqs = [...bySeq.keys()].sort((a, b) => a - b)
      let prev: { seq: number; hash: string } | undefined
      let endSeq: number | undefined
      for (const seq of seqs) {
        const copies = bySeq.get(seq)!
        // Identical copies are a re-send; different contents at one position are a conflict.
        const distinct = new Set(copies.map((c) => `${c.spanId}/${c.stored}/${c.actual}`))
        duplicates += copies.length - distinct.size
        if (distinct.size > 1) {
          problems.push({ chainId, kind: 'conflict', from: seq, to: seq, message: `seq ${seq}: ${distinct.size} different records claim this position` })
        }
        const e = copies[0]!
        if (e.stored !== e.actual) problems.push({ chainId, kind: 'edited', from: seq, to: seq, message: `seq ${seq}: content does not match its hash (record edited)` })
        if (prev === undefined) {
          if (seq !== 1 && !this.#opts.partial) {
            const n = seq - 1
            problems.push({ chainId, kind: 'missing-head', from: 1, to: n, message: `seq 1..${n}: ${n} record${n === 1 ? '' : 's'} missing before the first one found` })
          } else if (seq === 1 && e.prev !== GENESIS_HASH) {
            problems.push({ chainId, kind: 'broken-link', from: 1, to: 1, message: 'seq 1: does not start from the genesis hash' })
          }
        } else if (seq !== prev.seq + 1) {
          const n = seq - prev.seq - 1
          problems.push({ chainId, kind: 'missing', from: prev.seq + 1, to: seq - 1, message: `seq ${prev.seq + 1}..${seq - 1}: ${n} record${n === 1 ? '' : 's'} missing (deleted or never delivered)` })
        } else if (e.prev !== prev.hash) {
          problems.push({ chainId, kind: 'broken-link', from: seq, to: seq, message: `seq ${seq}: prev_hash does not match the hash of seq ${prev.seq} (record edited or replaced)` })
        }
        if (e.end && endSeq === undefined) endSeq = seq
        prev = { seq, hash: e.stored ?? e.actual }
      }
      const lastSeq = seqs.at(-1)!
      if (endSeq !== undefined && endSeq !== lastSeq) {
        problems.push({ chainId, kind: 'conflict', from: endSeq + 1, to: lastSeq, message: `seq ${endSeq + 1}..${lastSeq}: records follow the chain-end record` })
      }
      chains.push({ chainId, records: seqs.length, firstSeq: seqs[0]!, lastSeq, ended: endSeq !== undefined, head: prev?.hash ?? GENESIS_HASH })
    }
    return { chains, problems, unchained: this.#unchained, duplicates }
  }
}

/** Checks every chain found in `records`: hashes, sequence and links. */
export function verifyRecords(records: Iterable<SpanRecord>, opts: VerifyOptions = {}): VerifyResult {
  const v = new ChainVerifier(opts)
  for (const r of records) v.add(r)
  return v.result()
}
