/**
 * Where detectors can match at all, found in cheap passes over the
 * normalised text, so that RE2 patterns run only around those places:
 *
 * - keywords: every detector keyword in one Aho–Corasick automaton (a table
 *   of transitions, one lookup per byte, ASCII case folded in the table),
 *   with a start-of-word, -token or -part condition checked per hit;
 * - digit runs: runs of at least four digits joined by separators, each
 *   tested against the number-shaped detectors' gates (enough digits and
 *   groups, a "+" or a capital letter before, a trunk-prefix 0…);
 * - IBAN prefixes: two capitals and two digits at the start of a word;
 * - hex groups: the IPv6 shape (hex digits and colons, "::" or 7 colons).
 *
 * Every pass is linear in the input whatever it holds: the automaton and the
 * hex pass are plain loops over bytes; the digit-run and IBAN-prefix passes
 * are V8 regular expressions whose every character can be matched one way
 * only (nothing is retried), which V8's engine runs in linear time and faster
 * than a loop. A gate only decides where a pattern runs; what matches is
 * still decided by the RE2 pattern and its validators.
 */
import type { DigitRunGate } from './types.ts'

/** One keyword of the automaton. */
export interface KeywordEntry {
  readonly text: string
  readonly caseSensitive: boolean
  readonly boundary: 'none' | 'word' | 'token' | 'part'
  /** What a hit triggers (pattern unit indexes). */
  readonly targets: readonly number[]
}

/** Byte classes. */
const WORD = 1
const TOKEN = 2
const DIGIT = 4
const HEX = 8
const UPPER = 16
const ALNUM = 32
const CLASS = new Uint8Array(256)
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c)
  let k = 0
  if (/[A-Za-z0-9_]/.test(ch)) k |= WORD | TOKEN
  if (/[A-Za-z0-9]/.test(ch)) k |= ALNUM
  if (ch === '-') k |= TOKEN
  if (/[0-9]/.test(ch)) k |= DIGIT
  if (/[0-9A-Fa-f]/.test(ch)) k |= HEX
  if (/[A-Z]/.test(ch)) k |= UPPER
  CLASS[c] = k
}

/** Hits per target: flat [position, length, …] pairs, or 'full' once there are more than `limit`. */
export type Hits = number[] | 'full'

export class KeywordAutomaton {
  /** Byte → column of the transition table (bytes in no keyword share column 0). */
  readonly #column: Uint8Array
  /** log2 of the number of columns. */
  readonly #shift: number
  readonly #next: Uint16Array | Int32Array
  /** States from this number on report keywords. */
  readonly #firstReporting: number
  /** Per state: offset into #out of its keyword list (terminated by -1), or -1. */
  readonly #outAt: Int32Array
  readonly #out: Int32Array
  readonly #entries: readonly KeywordEntry[]
  readonly #bytes: readonly Buffer[]
  /** Per keyword: the byte classes that may not come right before it (0: anything may). */
  readonly #notAfter: Uint8Array

  constructor(entries: readonly KeywordEntry[]) {
    this.#entries = entries
    this.#bytes = entries.map((e) => Buffer.from(e.text, 'utf8'))
    this.#notAfter = Uint8Array.from(entries, (e) => (e.boundary === 'word' ? WORD : e.boundary === 'token' ? TOKEN : e.boundary === 'part' ? ALNUM : 0))
    const trie: Map<number, number>[] = [new Map()]
    const outs: number[][] = [[]]
    this.#bytes.forEach((b, id) => {
      let s = 0
      for (const raw of b) {
        const c = raw >= 65 && raw <= 90 ? raw + 32 : raw
        let t = trie[s]!.get(c)
        if (t === undefined) {
          t = trie.length
          trie.push(new Map())
          outs.push([])
          trie[s]!.set(c, t)
        }
        s = t
      }
      outs[s]!.push(id)
    })
    // Columns: one per byte that occurs in a keyword (upper-case letters share their lower-case column), one for all others.
    const column = new Uint8Array(256)
    let columns = 1
    for (const t of trie) for (const c of t.keys()) if (column[c] === 0) column[c] = columns++
    for (let c = 65; c <= 90; c++) column[c] = column[c + 32]!
    let shift = 0
    while (1 << shift < columns) shift++
    const width = 1 << shift
    const states = trie.length
    const next = states < 0x10000 ? new Uint16Array(states * width) : new Int32Array(states * width)
    const fail = new Int32Array(states)
    const queue: number[] = []
    for (const [c, t] of trie[0]!) {
      next[column[c]!] = t
      queue.push(t)
    }
    for (let qi = 0; qi < queue.length; qi++) {
      const s = queue[qi]!
      outs[s] = [...outs[s]!, ...outs[fail[s]!]!]
      const edges = new Map<number, number>()
      for (const [c, t] of trie[s]!) edges.set(column[c]!, t)
      for (let k = 0; k < width; k++) {
        const t = k === 0 ? undefined : edges.get(k)
        if (t !== undefined) {
          fail[t] = next[fail[s]! * width + k]!
          next[s * width + k] = t
          queue.push(t)
        } else next[s * width + k] = s === 0 ? 0 : next[fail[s]! * width + k]!
      }
    }
    // Renumber: states that report keywords come last, so the scan loop tests one number per byte.
    const order = [...Array(states).keys()].sort((a, b) => Number(outs[a]!.length > 0) - Number(outs[b]!.length > 0) || a - b)
    const renamed = new Int32Array(states)
    order.forEach((old, i) => (renamed[old] = i))
    const table = states < 0x10000 ? new Uint16Array(states * width) : new Int32Array(states * width)
    for (let old = 0; old < states; old++) for (let k = 0; k < width; k++) table[renamed[old]! * width + k] = renamed[next[old * width + k]!]!
    const outAt = new Int32Array(states).fill(-1)
    const flat: number[] = []
    order.forEach((old, i) => {
      if (outs[old]!.length === 0) return
      outAt[i] = flat.length
      flat.push(...outs[old]!, -1)
    })
    this.#column = column
    this.#shift = shift
    this.#next = table
    const firstReporting = order.findIndex((old) => outs[old]!.length > 0)
    this.#firstReporting = firstReporting < 0 ? states : firstReporting
    this.#outAt = outAt
    this.#out = Int32Array.from(flat)
  }

  /** Records every keyword hit into `hits[target]`. */
  scan(bytes: Uint8Array, hits: Hits[], limit: number): void {
    const next = this.#next
    const outAt = this.#outAt
    const reporting = this.#firstReporting
    const column = this.#column
    const shift = this.#shift
    const n = bytes.length
    let s = 0
    for (let i = 0; i < n; i++) {
      s = next[(s << shift) | column[bytes[i]!]!]!
      if (s >= reporting) this.#hit(bytes, i, outAt[s]!, hits, limit)
    }
  }

  #hit(bytes: Uint8Array, i: number, at: number, hits: Hits[], limit: number): void {
    const out = this.#out
    for (let k = at; out[k]! >= 0; k++) {
      const id = out[k]!
      const e = this.#entries[id]!
      const kw = this.#bytes[id]!
      const start = i - kw.length + 1
      const notAfter = this.#notAfter[id]!
      if (notAfter !== 0 && start > 0 && CLASS[bytes[start - 1]!]! & notAfter) continue
      if (e.caseSensitive && !sameBytes(bytes, start, kw)) continue
      for (const t of e.targets) addHit(hits, t, start, kw.length, limit)
    }
  }
}

function sameBytes(bytes: Uint8Array, start: number, kw: Buffer): boolean {
  for (let j = 0; j < kw.length; j++) if (bytes[start + j] !== kw[j]) return false
  return true
}

export function addHit(hits: Hits[], target: number, pos: number, len: number, limit: number): void {
  const cur = hits[target]
  if (cur === 'full') return
  if (cur === undefined) hits[target] = [pos, len]
  else if (cur.length >= limit * 2) hits[target] = 'full'
  else cur.push(pos, len)
}

/** Separators a digit gate may use, and the longest gap: what the run pass below joins. */
export const RUN_SEPARATORS = ' \t\r\n.()-'
export const RUN_MAX_GAP = 4
export const RUN_MIN_DIGITS = 4
/**
 * Runs of at least four digits joined by up to four separators. V8's engine
 * runs it in linear time: the separator class and `\d` are disjoint, so each
 * character can be matched one way only and nothing is retried.
 */
const RUN = /\d(?:[ \t\r\n.()-]{0,4}\d){3,}/g

/** A digit gate ready to run: every field present (one object shape), separators as a byte table. */
export class CompiledGate {
  readonly separators = new Uint8Array(256)
  readonly maxGap: number
  readonly minDigits: number
  readonly minGroups: number
  readonly maxGroups: number
  readonly capitalBefore: boolean
  /** Byte that must come right before the run, or -1. */
  readonly charBefore: number
  /** Digit a group must start with to begin a match, or -1. */
  readonly groupStartsWith: number
  readonly reach: number
  readonly targets: readonly number[]

  constructor(gate: DigitRunGate, targets: readonly number[]) {
    for (const ch of gate.separators) {
      if (!RUN_SEPARATORS.includes(ch)) throw new Error(`digit gate separator ${JSON.stringify(ch)} is not one of ${JSON.stringify(RUN_SEPARATORS)}`)
      this.separators[ch.charCodeAt(0)] = 1
    }
    if (gate.maxGap > RUN_MAX_GAP || gate.minDigits < RUN_MIN_DIGITS) throw new Error(`digit gates allow gaps up to ${RUN_MAX_GAP} and need at least ${RUN_MIN_DIGITS} digits`)
    this.maxGap = gate.maxGap
    this.minDigits = gate.minDigits
    this.minGroups = gate.minGroups ?? 1
    this.maxGroups = gate.maxGroups ?? Number.MAX_SAFE_INTEGER
    this.capitalBefore = gate.capitalBefore ?? false
    this.charBefore = gate.charBefore === undefined ? -1 : gate.charBefore.charCodeAt(0)
    this.groupStartsWith = gate.groupStartsWith === undefined ? -1 : gate.groupStartsWith.charCodeAt(0)
    this.reach = gate.reach ?? 8
    this.targets = targets
  }
}

let groupScratch = new Int32Array(256)

/**
 * Runs of digits that pass each gate, recorded as hits for the gate's
 * targets. `view` has one character per byte of `bytes`.
 */
export function digitRunHits(view: string, bytes: Uint8Array, gates: readonly CompiledGate[], hits: Hits[], limit: number): void {
  RUN.lastIndex = 0
  let m: RegExpExecArray | null
  while ((m = RUN.exec(view)) !== null) {
    const end = m.index + m[0].length
    let k = 0
    for (let i = m.index; i < end; ) {
      if (bytes[i]! < 48 || bytes[i]! > 57) {
        i++
        continue
      }
      const s = i
      while (i < end && bytes[i]! >= 48 && bytes[i]! <= 57) i++
      if (k + 2 > groupScratch.length) {
        const grown = new Int32Array(groupScratch.length * 2)
        grown.set(groupScratch)
        groupScratch = grown
      }
      groupScratch[k++] = s
      groupScratch[k++] = i
    }
    for (const g of gates) gateRuns(bytes, groupScratch, k >> 1, g, hits, limit)
  }
}

/** The runs of one gate among the digit groups of one run pass match. */
function gateRuns(bytes: Uint8Array, groups: Int32Array, count: number, gate: CompiledGate, hits: Hits[], limit: number): void {
  const sep = gate.separators
  let k = 0
  while (k < count) {
    const first = k
    let runEnd = groups[2 * k + 1]!
    let j = k + 1
    for (; j < count; j++) {
      const gs = groups[2 * j]!
      if (gs - runEnd > gate.maxGap) break
      let ok = true
      for (let p = runEnd; p < gs; p++) {
        if (!sep[bytes[p]!]) {
          ok = false
          break
        }
      }
      if (!ok) break
      runEnd = groups[2 * j + 1]!
    }
    k = j
    const nGroups = j - first
    if (nGroups < gate.minGroups || nGroups > gate.maxGroups) continue
    let from = first
    if (gate.groupStartsWith >= 0) {
      // The first group that starts with the digit and leaves enough digits to the end of the run.
      while (from < j && bytes[groups[2 * from]!] !== gate.groupStartsWith) from++
      if (from === j) continue
    }
    const runStart = groups[2 * from]!
    let digits = 0
    for (let g = from; g < j; g++) digits += groups[2 * g + 1]! - groups[2 * g]!
    if (digits < gate.minDigits) continue
    if (gate.charBefore >= 0 && (runStart === 0 || bytes[runStart - 1] !== gate.charBefore)) continue
    if (gate.capitalBefore) {
      let p = runStart - 1
      if (p >= 0 && bytes[p] === 0x20) p--
      if (p < 0 || (CLASS[bytes[p]!]! & UPPER) === 0) continue
    }
    for (const t of gate.targets) addHit(hits, t, runStart, runEnd - runStart, limit)
  }
}

/** Deterministic (letters, then digits): linear in V8's engine. */
const COUNTRY_CHECK = /\b[A-Z]{2}[0-9]{2}/g

/** Two capitals and two digits at the start of a word, recorded as hits for the targets. */
export function countryCheckHits(view: string, targets: readonly number[], hits: Hits[], limit: number): void {
  COUNTRY_CHECK.lastIndex = 0
  let m: RegExpExecArray | null
  while ((m = COUNTRY_CHECK.exec(view)) !== null) for (const t of targets) addHit(hits, t, m.index, 4, limit)
}

/** Runs with the IPv6 shape, recorded as hits for the targets. */
export function hexGroupHits(bytes: Buffer, targets: readonly number[], hits: Hits[], limit: number): void {
  const n = bytes.length
  let from = 0
  while (from < n) {
    const colon = bytes.indexOf(0x3a, from)
    if (colon < 0) return
    let s = colon
    while (s > 0 && (bytes[s - 1] === 0x3a || (bytes[s - 1]! < 128 && CLASS[bytes[s - 1]!]! & HEX))) s--
    let e = colon + 1
    let colons = 1
    let groups = 0
    let inGroup = false
    let doubled = false
    for (let p = s; p < colon; p++) {
      if (bytes[p] === 0x3a) {
        colons++
        if (p > s && bytes[p - 1] === 0x3a) doubled = true
        inGroup = false
      } else if (!inGroup) {
        groups++
        inGroup = true
      }
    }
    if (colon > s && bytes[colon - 1] === 0x3a) doubled = true
    inGroup = false
    while (e < n && (bytes[e] === 0x3a || (bytes[e]! < 128 && CLASS[bytes[e]!]! & HEX))) {
      if (bytes[e] === 0x3a) {
        colons++
        if (bytes[e - 1] === 0x3a) doubled = true
        inGroup = false
      } else if (!inGroup) {
        groups++
        inGroup = true
      }
      e++
    }
    if (groups >= 3 && (doubled || colons >= 7)) for (const t of targets) addHit(hits, t, s, e - s, limit)
    from = e
  }
}
