/**
 * Redaction of streamed (SSE) responses.
 *
 * Text deltas are concatenated per channel (a choice's content, a tool call's
 * arguments, an Anthropic content block…) and scanned as one text, so a
 * secret split across two deltas is found whole. Events are released in
 * order once their text is final: all text except the last `holdback`
 * characters of a channel (the longest match a detector allows), less any
 * match that may still grow or any open long-match marker. The end of the
 * stream releases everything. An event is never split or released before
 * its text has been scanned; a placeholder or a match spanning two events is
 * written into the event where it starts.
 *
 * Strings of an event that are not deltas (e.g. the full text repeated in a
 * Responses API `*.done` event) are scanned on their own.
 */
import type { JsonPath } from '../providers/types.ts'
import { formatPath, isBinaryPayload, setAtPath, STRUCTURAL_KEYS } from './json.ts'
import { applyEdits, findPlaceholders, type Edit, type PlaceholderBook } from './placeholders.ts'
import { siteEdits } from './document.ts'
import type { Scanner } from './scanner.ts'
import { SseFramer, serializeEvent, type SseEvent } from './sse.ts'
import type { Detection, RedactionAction, ScanSubject } from './types.ts'

/** Characters of released text kept as left context for word boundaries and context words. */
const CONTEXT = 64

export interface StreamDeps {
  readonly scanner: Scanner
  readonly subject: ScanSubject | undefined
  /** The action for a detection in the response. */
  action(d: Detection): RedactionAction
  readonly book: PlaceholderBook
  readonly restore: boolean
  /** Called once per final detection, with its location and offset. */
  onDetection(d: Detection, location: string, start: number, action: RedactionAction): void
}

export interface PushResult {
  readonly out: Buffer
  /** Set when a detection's action is block: the stream must end here. */
  readonly blocked?: readonly string[]
}

interface Channel {
  readonly name: string
  /** Text is a JSON fragment (tool-call arguments): restored values are JSON-escaped. */
  readonly json: boolean
  /** Unreleased original text, starting at absolute offset `base`. */
  text: string
  base: number
  /** The last CONTEXT characters of released original text. */
  tail: string
  /** Slots not yet final, in stream order. */
  readonly slots: Slot[]
}

interface Slot {
  readonly channel: Channel
  readonly path: JsonPath
  /** Absolute offsets in the channel. */
  readonly start: number
  readonly end: number
  readonly original: string
  output: string | undefined
}

interface Queued {
  readonly ev: SseEvent
  readonly obj: Record<string, unknown> | undefined
  readonly slots: readonly Slot[]
  /** Rewritten standalone strings (path → new value), or a new data text for non-JSON data. */
  readonly standalone: readonly { path: JsonPath; value: string }[]
  readonly newData: string | undefined
}

export class SseRedactor {
  readonly #deps: StreamDeps
  readonly #framer = new SseFramer()
  readonly #channels = new Map<string, Channel>()
  readonly #queue: Queued[] = []
  #terminated = false

  constructor(deps: StreamDeps) {
    this.#deps = deps
  }

  get terminated(): boolean {
    return this.#terminated
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

  #channel(name: string, json: boolean): Channel {
    let ch = this.#channels.get(name)
    if (!ch) {
      ch = { name, json, text: '', base: 0, tail: '', slots: [] }
      this.#channels.set(name, ch)
    }
    return ch
  }

  #enqueue(ev: SseEvent, blocked: Set<string>): void {
    const data = ev.data
    if (data === undefined || data === '' || data === '[DONE]') {
      this.#queue.push({ ev, obj: undefined, slots: [], standalone: [], newData: undefined })
      return
    }
    let obj: unknown
    if (data[0] === '{') {
      try {
        obj = JSON.parse(data)
      } catch {
        obj = undefined
      }
    }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) {
      // Not a JSON object: scan the data as one text.
      const value = this.#standalone(data, 'sse:data', blocked)
      this.#queue.push({ ev, obj: undefined, slots: [], standalone: [], newData: value === data ? undefined : value })
      return
    }
    const record = obj as Record<string, unknown>
    const slots: Slot[] = []
    const deltaPaths = new Set<string>()
    for (const d of deltaSlots(record)) {
      const ch = this.#channel(d.channel, d.json)
      const start = ch.base + ch.text.length
      ch.text += d.text
      const slot: Slot = { channel: ch, path: d.path, start, end: start + d.text.length, original: d.text, output: undefined }
      ch.slots.push(slot)
      slots.push(slot)
      deltaPaths.add(JSON.stringify(d.path))
    }
    const standalone: { path: JsonPath; value: string }[] = []
    walkStrings(record, (path, value) => {
      if (deltaPaths.has(JSON.stringify(path))) return
      const last = path[path.length - 1]
      if (typeof last === 'string' && STRUCTURAL_KEYS.has(last)) return
      if (isBinaryPayload(value, path)) return
      const out = this.#standalone(value, `sse:${formatPath(path)}`, blocked)
      if (out !== value) standalone.push({ path, value: out })
    })
    this.#queue.push({ ev, obj: record, slots, standalone, newData: undefined })
  }

  /** Scans and rewrites one self-contained string. */
  #standalone(value: string, location: string, blocked: Set<string>): string {
    const { scanner, subject, book, restore } = this.#deps
    const dets = scanner.scan(value, { subject })
    const actions = new Map<Detection, RedactionAction>()
    for (const d of dets) {
      const a = this.#deps.action(d)
      actions.set(d, a)
      this.#deps.onDetection(d, location, d.start, a)
      if (a === 'block') blocked.add(d.dataClass)
    }
    const edits = siteEdits(value, dets, (d) => actions.get(d)!, book, restore)
    return applyEdits(value, edits)
  }

  /** Makes the releasable prefix of a channel final: scan, decide, compute each slot's output. */
  #finalize(ch: Channel, end: boolean, blocked: Set<string>): void {
    if (ch.slots.length === 0) return
    const { scanner, subject, book, restore } = this.#deps
    const len = ch.text.length
    const ctx = ch.tail
    const dets = scanner
      .scan(ctx + ch.text, { subject })
      .filter((d) => d.start >= ctx.length)
      .map((d) => ({ ...d, start: d.start - ctx.length, end: d.end - ctx.length }))
    const places = restore && book.size > 0 ? findPlaceholders(ch.text).filter((p) => book.original(p.text) !== undefined) : []
    let r = end ? len : this.#releasePoint(ch.text, dets)
    // Round down to a slot boundary that no match or placeholder crosses.
    let cut = 0
    for (let guard = 0; guard <= dets.length + places.length + 1; guard++) {
      cut = 0
      for (const s of ch.slots) {
        const e = s.end - ch.base
        if (e <= r) cut = e
        else break
      }
      const crossing = [...dets, ...places].find((d) => d.start < cut && d.end > cut)
      if (!crossing) break
      r = crossing.start
    }
    if (cut === 0 && !(ch.slots[0] && ch.slots[0].end === ch.slots[0].start)) return
    const finalDets = dets.filter((d) => d.end <= cut)
    const actions = new Map<Detection, RedactionAction>()
    for (const d of finalDets) {
      const a = this.#deps.action(d)
      actions.set(d, a)
      this.#deps.onDetection(d, `sse:${ch.name}`, ch.base + d.start, a)
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
    ch.tail = (ch.tail + region).slice(-CONTEXT)
    ch.text = ch.text.slice(cut)
    ch.base += cut
  }

  /** How much of a channel's pending text may become final now. */
  #releasePoint(text: string, dets: readonly Detection[]): number {
    const scanner = this.#deps.scanner
    const len = text.length
    let r = len - scanner.holdback
    if (scanner.openMarkers.length > 0) {
      const low = text.toLowerCase()
      for (const m of scanner.openMarkers) {
        for (let p = low.indexOf(m.marker, Math.max(0, len - m.maxLength)); p >= 0 && p < r; p = low.indexOf(m.marker, p + 1)) {
          if (markerOpen(low, p, m.marker, m.close)) {
            r = p
            break
          }
        }
      }
    }
    // A match that reaches the end of what has arrived may still grow.
    for (const d of dets) if (d.end >= len - 1 && d.start < r) r = d.start
    return Math.max(0, r)
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
  if (q.newData !== undefined) return serializeEvent(q.ev, q.newData)
  const changed = q.slots.some((s) => s.output !== s.original) || q.standalone.length > 0
  if (!changed || !q.obj) return q.ev.raw
  for (const s of q.slots) setAtPath(q.obj, s.path, s.output)
  for (const e of q.standalone) setAtPath(q.obj, e.path, e.value)
  return serializeEvent(q.ev, JSON.stringify(q.obj))
}

/**
 * Is a long-match marker at `p` still open? With a close marker: until it
 * follows. Otherwise: while the token after the marker (after one run of
 * spaces, tabs or colons) runs to the end of the text.
 */
function markerOpen(low: string, p: number, marker: string, close: string | undefined): boolean {
  const after = p + marker.length
  if (close) return low.indexOf(close, after) < 0
  let i = after
  while (i < low.length && (low[i] === ' ' || low[i] === '\t' || low[i] === ':')) i++
  for (; i < low.length; i++) {
    const c = low.charCodeAt(i)
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0x22 || c === 0x27) return false
  }
  return true
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

/** The text deltas of one event, by channel, for the OpenAI and Anthropic streaming formats. */
export function deltaSlots(o: Record<string, unknown>): { channel: string; json: boolean; path: JsonPath; text: string }[] {
  const out: { channel: string; json: boolean; path: JsonPath; text: string }[] = []
  const str = (v: unknown): v is string => typeof v === 'string'
  // OpenAI chat completions and legacy completions.
  if (Array.isArray(o.choices)) {
    o.choices.forEach((c: unknown, ci) => {
      if (!c || typeof c !== 'object') return
      const choice = c as Record<string, unknown>
      const idx = typeof choice.index === 'number' ? choice.index : ci
      if (str(choice.text)) out.push({ channel: `completion.${idx}`, json: false, path: ['choices', ci, 'text'], text: choice.text })
      const delta = choice.delta as Record<string, unknown> | undefined
      if (!delta || typeof delta !== 'object') return
      for (const f of ['content', 'refusal', 'reasoning_content', 'reasoning']) {
        const v = delta[f]
        if (str(v)) out.push({ channel: `chat.${idx}.${f}`, json: false, path: ['choices', ci, 'delta', f], text: v })
      }
      if (Array.isArray(delta.tool_calls)) {
        delta.tool_calls.forEach((t: unknown, ti) => {
          const tc = t as { index?: unknown; function?: { arguments?: unknown } }
          const args = tc?.function?.arguments
          if (str(args)) {
            const tIdx = typeof tc.index === 'number' ? tc.index : ti
            out.push({ channel: `chat.${idx}.tool.${tIdx}`, json: true, path: ['choices', ci, 'delta', 'tool_calls', ti, 'function', 'arguments'], text: args })
          }
        })
      }
    })
    return out
  }
  const type = o.type
  // Anthropic messages.
  if (type === 'content_block_delta' && o.delta && typeof o.delta === 'object') {
    const d = o.delta as Record<string, unknown>
    const idx = typeof o.index === 'number' ? o.index : 0
    if (str(d.text)) out.push({ channel: `block.${idx}.text`, json: false, path: ['delta', 'text'], text: d.text })
    if (str(d.partial_json)) out.push({ channel: `block.${idx}.json`, json: true, path: ['delta', 'partial_json'], text: d.partial_json })
    if (str(d.thinking)) out.push({ channel: `block.${idx}.thinking`, json: false, path: ['delta', 'thinking'], text: d.thinking })
    return out
  }
  if (type === 'content_block_start' && o.content_block && typeof o.content_block === 'object') {
    const b = o.content_block as Record<string, unknown>
    const idx = typeof o.index === 'number' ? o.index : 0
    if (str(b.text)) out.push({ channel: `block.${idx}.text`, json: false, path: ['content_block', 'text'], text: b.text })
    if (str(b.thinking)) out.push({ channel: `block.${idx}.thinking`, json: false, path: ['content_block', 'thinking'], text: b.thinking })
    return out
  }
  // OpenAI Responses API: response.output_text.delta, response.function_call_arguments.delta, …
  if (typeof type === 'string' && type.endsWith('.delta') && str(o.delta)) {
    const item = str(o.item_id) ? o.item_id : String(o.output_index ?? 0)
    const part = typeof o.content_index === 'number' ? o.content_index : 0
    out.push({ channel: `responses.${item}.${part}.${type}`, json: type.includes('arguments'), path: ['delta'], text: o.delta })
  }
  return out
}

/** Every non-empty string in a parsed JSON value (iterative: no depth limit, nothing skipped). */
function walkStrings(root: unknown, fn: (path: JsonPath, value: string) => void): void {
  const stack: { v: unknown; path: (string | number)[] }[] = [{ v: root, path: [] }]
  while (stack.length > 0) {
    const { v, path } = stack.pop()!
    if (typeof v === 'string') {
      if (v.length > 0) fn(path, v)
    } else if (Array.isArray(v)) for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], path: [...path, i] })
    else if (v && typeof v === 'object') {
      const entries = Object.entries(v)
      for (let i = entries.length - 1; i >= 0; i--) stack.push({ v: entries[i]![1], path: [...path, entries[i]![0]] })
    }
  }
}
