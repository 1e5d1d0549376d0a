/**
 * Redaction of streamed (SSE) responses.
 *
 * Every event is read as the clients read it (sse.ts) and everything in it is
 * scanned: the lines that are not data (comments, `event`, `id`, unknown
 * fields) as one text; data that JSON.parse accepts key by key, string by
 * string and number by number, decoded (`\u0067` is a `g`), every occurrence
 * of a duplicate key included; any other data as one text. Exempt are only
 * values positively identified by exempt.ts: an enumerated protocol field
 * holding one of its values, and a base64 image or audio payload. A redacted
 * number becomes a string placeholder; a redacted key is renamed.
 *
 * Text deltas are concatenated per channel (a choice's content, a tool call's
 * arguments, an Anthropic content block…) and scanned as one text, so a
 * secret split across any number of deltas is found whole. Events are
 * released in order once their text is final: all text of a channel except
 * the last `holdback` characters (the longest match a detector allows), less
 * any open long-match marker (`-----BEGIN` until `-----END`, `eyJ` until its
 * token ends…) and any match that may still grow. The end of the stream
 * releases everything. An event is never split or released before its text
 * has been scanned; a placeholder or a match spanning two events is written
 * into the event where it starts.
 *
 * Tool-call argument fragments (and any channel text that carries escapes,
 * such as structured JSON output) are also scanned as the reader's JSON.parse
 * will decode them, through a decoded view kept as the text arrives; markers
 * written with escapes hold text back as well, and no cut falls inside an
 * escape sequence.
 *
 * Cost: a channel is scanned only when some of its text can be released and
 * a step of text (RELEASE_STEP characters) arrived since its last scan, or at
 * the end, and then only its unreleased text (the hold-back plus what arrived
 * since) with a little released text before it as context. Open markers are
 * followed incrementally, each character looked at once, so a long PEM block
 * streamed in tiny deltas costs one scan when it closes, not one per delta.
 * Scans of the other strings of an event are cached per stream by text (ids,
 * model names and keys repeat in every event).
 *
 * Every event goes out in canonical SSE form (sse.ts), so every client reads
 * from the output the events that were scanned.
 */
import { deltaSlots } from '../providers/apis/index.ts'
import { siteEdits } from './document.ts'
import { jsonTokens, type JsonToken } from './json-tokens.ts'
import { applyEdits, findPlaceholders, type Edit, type PlaceholderBook } from './placeholders.ts'
import { resolveOverlaps, type Scanner } from './scanner.ts'
import { otherLines, SseFramer, serializeEvent, type SseEvent } from './sse.ts'
import type { Detection, RedactionAction } from './types.ts'
import { decodeFragment, isExempt, ValueScanner, type ValueDeps } from './values.ts'

/** Characters of released text kept as left context for word boundaries and context words. */
const CONTEXT = 64
/**
 * New text a channel waits for between scans (unless the stream ends): each
 * scan covers the hold-back plus at least this much new text, so a larger
 * step scans each character fewer times and holds text a little longer.
 */
const RELEASE_STEP = 128
/** What the redactor needs: the scanner, the caller, actions, the placeholder book, and where findings go. */
export type StreamDeps = ValueDeps

export interface PushResult {
  readonly out: Buffer
  /** Set when a detection's action is block: the stream must end here. */
  readonly blocked?: readonly string[]
}

type OpenMarker = Scanner['openMarkers'][number]

interface Channel {
  /** Printable name for findings (never response text). */
  readonly label: string
  /** Text is a JSON fragment (tool-call arguments): restored values are JSON-escaped. */
  readonly json: boolean
  /** Unreleased original text, starting at absolute offset `base`. */
  text: string
  base: number
  /** The last CONTEXT characters of released original text. */
  tail: string
  /** Slots not yet final, in stream order. */
  readonly slots: Slot[]
  /** Open long-match markers in the unreleased text. */
  marks: Mark[]
  /** Absolute length of the text when markers were last looked for, and when it was last scanned. */
  marked: number
  scanned: number
  /** Whether `base` lies inside a JSON string literal (for the decoded view of the text). */
  inString: boolean
  /** The unreleased text as JSON.parse reads it, kept for JSON fragments and for texts that carry escapes. */
  view: View | undefined
  /** Relative offset up to which the text has been looked at for a backslash. */
  escapesChecked: number
}

/**
 * A channel's unreleased text, escapes decoded, built as text arrives. Its
 * own open markers are followed on it (an escaped `-----BEGIN` is a marker
 * too); `base` counts decoded units released.
 */
interface View {
  text: string
  base: number
  marks: Mark[]
  marked: number
  /** Span in the channel's unreleased text (relative to the channel's base) of each decoded unit. */
  starts: number[]
  ends: number[]
  /** Complete escape sequences, relative to the channel's base. */
  escapes: { start: number; end: number }[]
  /** Relative offset up to which the text is decoded, and the string state there. */
  done: number
  inString: boolean
}

/** Text whose open markers are followed: a channel's text, or its decoded view. */
interface Track {
  readonly text: string
  readonly base: number
  marks: Mark[]
  marked: number
}

interface Mark {
  /** Absolute offset of the marker. */
  readonly pos: number
  readonly marker: OpenMarker
  /** Absolute offset up to which the text after the marker has been looked at. */
  checked: number
  /** For markers without a close marker: the token after the marker has begun. */
  inToken: boolean
}

interface Slot {
  readonly channel: Channel
  /** The string token of the event's data that carries this delta. */
  readonly token: JsonToken
  /** Absolute offsets in the channel. */
  readonly start: number
  readonly end: number
  readonly original: string
  output: string | undefined
}

interface Queued {
  readonly ev: SseEvent
  readonly slots: readonly Slot[]
  /** Rewrites of JSON data: token spans and their new JSON text. */
  readonly edits: readonly Edit[]
  /** A new data field for data that is not JSON. */
  readonly newData: string | undefined
  /** New lines in place of the event's other lines. */
  readonly newOthers: readonly string[] | undefined
}

/** Compiled once per scanner: the open markers as one case-insensitive (ASCII) search. */
const markerSearch = new WeakMap<Scanner, { re: RegExp; longest: number; closes: Map<string, RegExp> } | undefined>()
function markersOf(scanner: Scanner): { re: RegExp; longest: number; closes: Map<string, RegExp> } | undefined {
  if (markerSearch.has(scanner)) return markerSearch.get(scanner)
  const ms = scanner.openMarkers
  let v: { re: RegExp; longest: number; closes: Map<string, RegExp> } | undefined
  if (ms.length > 0) {
    const esc = (s: string) => s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&')
    const closes = new Map<string, RegExp>()
    for (const m of ms) if (m.close && !closes.has(m.close)) closes.set(m.close, new RegExp(esc(m.close), 'gi'))
    v = { re: new RegExp(ms.map((m) => esc(m.marker)).join('|'), 'gi'), longest: Math.max(...ms.map((m) => m.marker.length)), closes }
  }
  markerSearch.set(scanner, v)
  return v
}

export class SseRedactor {
  readonly #deps: StreamDeps
  readonly #framer = new SseFramer()
  readonly #channels = new Map<string, Channel>()
  readonly #ordinals = new Map<string, number>()
  readonly #queue: Queued[] = []
  readonly #values: ValueScanner
  #terminated = false

  constructor(deps: StreamDeps) {
    this.#deps = deps
    this.#values = new ValueScanner(deps)
  }

  get terminated(): boolean {
    return this.#terminated
  }

  /** Bytes of an event not yet complete (held by the framer). */
  get pendingBytes(): number {
    return this.#framer.pendingBytes
  }

  /** Feeds decoded bytes; returns the bytes that may be released now. */
  push(data: Buffer, end: boolean): PushResult {
    if (this.#terminated) return { out: Buffer.alloc(0) }
    const events = this.#framer.push(data)
    if (end) {
      const rest = this.#framer.flush()
      if (rest) events.push(rest)
    }
    const blocked = new Set<string>()
    for (const ev of events) this.#enqueue(ev, blocked)
    for (const ch of this.#channels.values()) this.#finalize(ch, end, blocked)
    if (blocked.size > 0) {
      this.#terminated = true
      return { out: Buffer.alloc(0), blocked: [...blocked].sort() }
    }
    return { out: this.#release() }
  }

  #channel(key: string, family: string, json: boolean): Channel {
    let ch = this.#channels.get(key)
    if (!ch) {
      const n = (this.#ordinals.get(family) ?? 0) + 1
      this.#ordinals.set(family, n)
      ch = { label: n === 1 ? family : `${family}#${n}`, json, text: '', base: 0, tail: '', slots: [], marks: [], marked: 0, scanned: 0, inString: false, view: undefined, escapesChecked: 0 }
      this.#channels.set(key, ch)
    }
    return ch
  }

  #enqueue(ev: SseEvent, blocked: Set<string>): void {
    let newOthers: string[] | undefined
    const others = otherLines(ev)
    if (others.length > 0) {
      const joined = others.join('\n')
      // No restoration here: a restored value with a line break would add lines to the event.
      const out = this.#values.rewrite(joined, 'sse:fields', blocked, false)
      if (out !== joined) newOthers = out.split(/\r\n|\r|\n/)
    }
    const data = ev.data
    if (data === undefined || data === '') {
      this.#queue.push({ ev, slots: [], edits: [], newData: undefined, newOthers })
      return
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(data)
    } catch {
      // Not JSON: the data is one text.
      const value = this.#values.rewrite(data, 'sse:data', blocked)
      this.#queue.push({ ev, slots: [], edits: [], newData: value === data ? undefined : value, newOthers })
      return
    }
    const tokens = jsonTokens(data)
    const slots: Slot[] = []
    const inSlot = new Set<JsonToken>()
    const deltas = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? deltaSlots(parsed as Record<string, unknown>) : []
    if (deltas.length > 0) {
      // JSON.parse keeps the last of duplicate keys: the last string token at a path is the delta a client sees.
      // (Each delta has a path of its own: deltaSlots builds them from distinct positions.)
      const last: (JsonToken | undefined)[] = new Array<JsonToken | undefined>(deltas.length)
      for (const t of tokens) {
        if (t.kind !== 'string') continue
        for (let j = 0; j < deltas.length; j++) if (samePath(t.path, deltas[j]!.path)) last[j] = t
      }
      for (let j = 0; j < deltas.length; j++) {
        const d = deltas[j]!
        const token = last[j]
        if (!token) continue
        const ch = this.#channel(d.channel, d.family, d.json)
        const start = ch.base + ch.text.length
        ch.text += token.value
        const slot: Slot = { channel: ch, token, start, end: start + token.value.length, original: token.value, output: undefined }
        ch.slots.push(slot)
        slots.push(slot)
        inSlot.add(token)
      }
    }
    const standalone = tokens.filter((t) => !inSlot.has(t) && !isExempt(t))
    const edits = this.#values.tokenEdits(standalone, blocked, 'sse:')
    this.#queue.push({ ev, slots, edits, newData: undefined, newOthers })
  }

  /** Follows a track's open markers over the text that arrived since the last look. */
  #trackMarkers(t: Track): void {
    const search = markersOf(this.#deps.scanner)
    const abs = t.base + t.text.length
    if (!search || abs === t.marked) return
    const text = t.text
    const prev = t.marked
    // New markers: those that end in the new text.
    const re = search.re
    re.lastIndex = Math.max(0, prev - (search.longest - 1) - t.base)
    let m: RegExpExecArray | null
    while ((m = re.exec(text)) !== null) {
      const p = m.index
      for (const marker of this.#deps.scanner.openMarkers) {
        const e = t.base + p + marker.marker.length
        if (e > prev && e <= abs && startsWithAscii(text, p, marker.marker)) {
          t.marks.push({ pos: t.base + p, marker, checked: t.base + p + marker.marker.length, inToken: false })
        }
      }
      re.lastIndex = p + 1
    }
    t.marks = t.marks.filter((mk) => stillOpen(mk, t, abs, search.closes))
    t.marked = abs
  }

  /** Brings the channel's decoded view up to date (creating it once the text needs one). */
  #updateView(ch: Channel): void {
    if (!ch.view) {
      if (!ch.json) {
        if (ch.text.indexOf('\\', ch.escapesChecked) < 0) {
          ch.escapesChecked = ch.text.length
          return
        }
      }
      ch.view = { text: '', base: 0, marks: [], marked: 0, starts: [], ends: [], escapes: [], done: 0, inString: ch.inString }
    }
    const v = ch.view
    if (v.done === ch.text.length) return
    const d = decodeFragment(ch.text.slice(v.done), v.inString)
    v.text += d.text
    for (let j = 0; j < d.starts.length; j++) {
      v.starts.push(d.starts[j]! + v.done)
      v.ends.push(d.ends[j]! + v.done)
    }
    for (const e of d.escapes) if (e.end <= d.consumed) v.escapes.push({ start: e.start + v.done, end: e.end + v.done })
    v.done += d.consumed
    v.inString = d.inString
    this.#trackMarkers(v)
  }

  /** Makes the releasable prefix of a channel final: scan, decide, compute each slot's output. */
  #finalize(ch: Channel, end: boolean, blocked: Set<string>): void {
    if (ch.slots.length === 0) return
    const scanner = this.#deps.scanner
    const { book, restore } = this.#deps
    this.#trackMarkers(ch)
    this.#updateView(ch)
    const view = ch.view
    const len = ch.text.length
    let r = len
    if (!end) {
      r = len - scanner.holdback
      for (const mk of ch.marks) r = Math.min(r, mk.pos - ch.base)
      if (view) for (const mk of view.marks) r = Math.min(r, view.starts[mk.pos - view.base] ?? len)
      // An escape sequence still arriving at the end waits too.
      if (view && view.done < len) r = Math.min(r, view.done)
      // A high surrogate at the end waits for its pair.
      if (len > 0 && isHighSurrogate(ch.text.charCodeAt(len - 1))) r = Math.min(r, len - 1)
      if (r < 0) r = 0
    }
    // Scan only when some slot can be released and (before the end) a step of text arrived since the last scan.
    if (ch.slots[0]!.end - ch.base > r) return
    if (!end && ch.slots[0]!.end > ch.base && ch.base + len - ch.scanned < RELEASE_STEP) return
    if (!end) {
      // The scanner's own hold-back, counted in normalised characters: removed (zero-width) characters never
      // shorten it, markers written with them or in full-width forms still hold, and a base64 run reaching the
      // end waits whole. Asked at most once per step of new text, so the cost stays linear.
      r = Math.min(r, scanner.holdbackStart(ch.text))
      if (ch.slots[0]!.end - ch.base > r) return
    }
    ch.scanned = ch.base + len
    // A JSON fragment (tool arguments) is scanned as the caller's JSON.parse will read it, escapes decoded;
    // a text that carries escapes (a JSON answer, structured output) both as it is and decoded.
    let dets: Detection[] = []
    if (ch.slots[0]!.end > ch.base || len > 0) {
      const ctx = ch.tail
      const grows: Detection[] = []
      const collect = (scanned: string, mapped: boolean) => {
        for (const f of this.#values.scan(ctx + scanned)) {
          if (f.end <= ctx.length) continue
          let d: Detection = { ...f, start: Math.max(0, f.start - ctx.length), end: f.end - ctx.length }
          const atEnd = d.end >= scanned.length - 1
          if (mapped) d = { ...d, start: view!.starts[d.start]!, end: view!.ends[d.end - 1]! }
          dets.push(d)
          if (atEnd) grows.push(d)
        }
      }
      if (!ch.json) collect(ch.text, false)
      if (view && (ch.json || view.text !== ch.text)) collect(view.text, true)
      if (!ch.json && view) dets = resolveOverlaps(dets)
      // A match that reaches the end of what has arrived may still grow.
      if (!end) for (const d of grows) if (d.start < r) r = d.start
    }
    const places = restore && book.size > 0 ? findPlaceholders(ch.text).filter((p) => book.original(p.text) !== undefined) : []
    // No cut falls inside an escape sequence (one still arriving included).
    const escapes = view ? (view.done < len ? [...view.escapes, { start: view.done, end: len }] : view.escapes) : []
    // Round down to a slot boundary that no match or placeholder crosses.
    let cut = 0
    for (let guard = 0; guard <= dets.length + places.length + escapes.length + 1; guard++) {
      cut = 0
      for (const s of ch.slots) {
        const e = s.end - ch.base
        if (e <= r) cut = e
        else break
      }
      const crossing = dets.find((d) => d.start < cut && d.end > cut) ?? places.find((p) => p.start < cut && p.end > cut) ?? escapes.find((e) => e.start < cut && e.end > cut)
      if (!crossing) break
      r = crossing.start
    }
    if (cut === 0 && !(ch.slots[0]!.end === ch.base)) return
    const finalDets = dets.filter((d) => d.end <= cut)
    const actions = new Map<Detection, RedactionAction>()
    for (const d of finalDets) {
      const a = this.#deps.action(d)
      actions.set(d, a)
      this.#deps.onDetection(d, `sse:${ch.label}`, ch.base + d.start, a)
      if (a === 'block') blocked.add(d.dataClass)
    }
    const region = ch.text.slice(0, cut)
    let edits = siteEdits(region, finalDets, (d) => actions.get(d)!, book, restore)
    if (ch.json) edits = edits.map((e) => jsonSafeEdit(e, region, book))
    // Each slot gets its text with the edits that start inside it; an edit running on
    // into later slots removes their covered text.
    const sorted = [...edits].sort((a, b) => a.start - b.start)
    let k = 0
    let carry = 0 // end of the last edit, relative to the channel region
    while (ch.slots.length > 0) {
      const s = ch.slots[0]!
      const a = s.start - ch.base
      const b = s.end - ch.base
      if (b > cut) break
      let out = ''
      let pos = Math.max(a, carry)
      while (k < sorted.length && sorted[k]!.start < b) {
        const e = sorted[k]!
        if (e.start >= pos) out += region.slice(pos, e.start)
        out += e.text
        pos = Math.max(pos, e.end)
        carry = e.end
        k++
      }
      if (pos < b) out += region.slice(pos, b)
      s.output = out
      ch.slots.shift()
    }
    let released = region
    ch.inString = stringStateAfter(region, ch.inString)
    if (view) {
      // Drop the decoded units of the released text (no cut falls inside an escape).
      let k = 0
      while (k < view.starts.length && view.starts[k]! < cut) k++
      if (ch.json) released = view.text.slice(0, k)
      view.text = view.text.slice(k)
      view.starts = view.starts.slice(k).map((x) => x - cut)
      view.ends = view.ends.slice(k).map((x) => x - cut)
      view.escapes = view.escapes.filter((e) => e.start >= cut).map((e) => ({ start: e.start - cut, end: e.end - cut }))
      view.done -= cut
      view.base += k
      view.marks = view.marks.filter((mk) => mk.pos >= view.base)
    }
    ch.escapesChecked = Math.max(0, ch.escapesChecked - cut)
    let tail = (ch.tail + released).slice(-CONTEXT)
    if (tail.length > 0 && isLowSurrogate(tail.charCodeAt(0))) tail = tail.slice(1)
    ch.tail = tail
    ch.text = ch.text.slice(cut)
    ch.base += cut
    ch.marks = ch.marks.filter((mk) => mk.pos >= ch.base)
  }

  /** Releases queued events, in order, while each one's text is final. */
  #release(): Buffer {
    const out: Buffer[] = []
    while (this.#queue.length > 0) {
      const q = this.#queue[0]!
      if (q.slots.some((s) => s.output === undefined)) break
      this.#queue.shift()
      out.push(render(q))
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out)
  }
}

function render(q: Queued): Buffer {
  let data = q.newData
  const data0 = q.ev.data
  if (data === undefined && data0 !== undefined) {
    const edits = [...q.edits]
    for (const s of q.slots) if (s.output !== s.original) edits.push({ start: s.token.start, end: s.token.end, text: JSON.stringify(s.output) })
    if (edits.length > 0) data = applyEdits(data0, edits)
  }
  return serializeEvent(q.ev, data, q.newOthers)
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff
}
function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff
}

/** `text` at `p` starts with `lower` (lower-case ASCII), ignoring ASCII case. */
function startsWithAscii(text: string, p: number, lower: string): boolean {
  if (p + lower.length > text.length) return false
  for (let i = 0; i < lower.length; i++) {
    let c = text.charCodeAt(p + i)
    if (c >= 0x41 && c <= 0x5a) c += 0x20
    if (c !== lower.charCodeAt(i)) return false
  }
  return true
}

/**
 * Is a long-match marker still open, looking only at text that arrived since
 * the last look? It closes when its close marker follows it or, without one,
 * when the token after it (after one run of spaces, tabs or colons) ends. A
 * marker older than its detector's longest match no longer holds text back.
 */
function stillOpen(mk: Mark, ch: Track, abs: number, closes: ReadonlyMap<string, RegExp>): boolean {
  if (abs - mk.pos > mk.marker.maxLength) return false
  const text = ch.text
  const close = mk.marker.close
  if (close) {
    const re = closes.get(close)!
    re.lastIndex = Math.max(mk.pos + mk.marker.marker.length, mk.checked - (close.length - 1)) - ch.base
    if (re.exec(text) !== null) return false
    mk.checked = abs
    return true
  }
  for (let i = mk.checked - ch.base; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (!mk.inToken) {
      if (c === 0x20 || c === 0x09 || c === 0x3a) continue
      mk.inToken = true
    }
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0x22 || c === 0x27) return false
  }
  mk.checked = abs
  return true
}

/** Whether a JSON string literal is open after `raw`, given whether one was open before it. */
function stringStateAfter(raw: string, inString: boolean): boolean {
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    if (inString && c === 0x5c) i++
    else if (c === 0x22) inString = !inString
  }
  return inString
}

/**
 * In a JSON-fragment channel a restored value is JSON-escaped, and an edit
 * never ends inside an escape sequence (a value ending in `\` takes the
 * escaped character with it).
 */
function jsonSafeEdit(e: Edit, region: string, book: PlaceholderBook): Edit {
  const isPlaceholder = e.text.startsWith('[') && book.original(e.text) !== undefined
  const text = isPlaceholder ? e.text : JSON.stringify(e.text).slice(1, -1)
  let end = e.end
  let slashes = 0
  for (let i = end - 1; i >= e.start && region[i] === '\\'; i--) slashes++
  if (slashes % 2 === 1 && end < region.length) end++
  return { start: e.start, end, text }
}

/** True when two JSON paths name the same place. */
function samePath(a: readonly (string | number)[], b: readonly (string | number)[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
