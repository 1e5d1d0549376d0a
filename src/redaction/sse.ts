/**
 * Server-sent events framing, read the way the clients read it.
 *
 * Lines end at LF, CR or CRLF (a CRLF split across chunks is one line end);
 * an event ends at a blank line. Field lines follow the WHATWG rules
 * ("Interpreting an event stream", html.spec.whatwg.org): a line starting with
 * `:` is a comment; otherwise the field name runs to the first `:` (the whole
 * line when there is none) and exactly one space after the colon is dropped;
 * `data` lines are joined with "\n".
 *
 * Where the official SDKs read more than the specification does, the framer
 * reads what the SDKs read, so nothing a client may decode goes unscanned:
 * a byte-order mark is dropped at the start of every line (the OpenAI and
 * Anthropic SDKs drop it per line, the specification only at the start of
 * the stream; all leading marks are dropped here so none survives into the
 * output), and the rest of a stream that ends without a blank line is an
 * event (the SDKs dispatch it).
 *
 * Events are written back in one canonical form (`serializeEvent`): LF line
 * ends, no byte-order marks, invalid UTF-8 replaced by U+FFFD. Every reader,
 * specification or SDK, then reads the same events from the output as the
 * framer read from the input.
 *
 * The framer works on bytes and hands on only complete lines, so a UTF-8
 * character or an event split across chunks is never seen in part; each
 * chunk's bytes are searched for line ends once.
 */

export interface SseEvent {
  /** The event's lines, decoded, without terminators or leading byte-order marks; the blank line excluded. */
  readonly lines: readonly string[]
  /** The data field: `data` lines joined with "\n", or undefined when there is none. */
  readonly data: string | undefined
  /** The last `event` field, or undefined. */
  readonly type: string | undefined
  /** False for the rest of a stream that ended without a blank line. */
  readonly terminated: boolean
  /** False when that rest ended in the middle of a line (no line terminator). */
  readonly lineEnded: boolean
}

const LF = 0x0a
const CR = 0x0d

export class SseFramer {
  /** Bytes of the current line received so far (a line may span chunks). */
  #partial: Buffer[] = []
  #partialBytes = 0
  /** Lines of the current event. */
  #lines: string[] = []
  #eventBytes = 0
  /** The previous chunk ended in CR: an LF starting the next chunk belongs to it. */
  #skipLF = false

  /** Complete events in `chunk` (with what was held from earlier chunks). */
  push(chunk: Buffer): SseEvent[] {
    const events: SseEvent[] = []
    let start = 0
    if (this.#skipLF && chunk.length > 0) {
      this.#skipLF = false
      if (chunk[0] === LF) start = 1
    }
    let i = start
    while (i < chunk.length) {
      const lf = chunk.indexOf(LF, i)
      const cr = chunk.indexOf(CR, i)
      const end = lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr)
      if (end < 0) break
      this.#line(chunk.subarray(start, end), events)
      let next = end + 1
      if (chunk[end] === CR) {
        if (next === chunk.length) this.#skipLF = true
        else if (chunk[next] === LF) next++
      }
      start = i = next
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start)
      this.#partial.push(rest)
      this.#partialBytes += rest.length
    }
    return events
  }

  /** The rest of a stream that ended without a blank line, as an event (as the SDKs read it). */
  flush(): SseEvent | undefined {
    this.#skipLF = false
    let lineEnded = true
    if (this.#partialBytes > 0) {
      const text = stripBom(decode(this.#take(Buffer.alloc(0))))
      if (text.length > 0) {
        lineEnded = false
        this.#lines.push(text)
      }
    }
    const lines = this.#lines
    this.#lines = []
    this.#eventBytes = 0
    if (lines.length === 0) return undefined
    return parseEvent(lines, false, lineEnded)
  }

  /** Bytes held while waiting for the end of an event. */
  get pendingBytes(): number {
    return this.#eventBytes + this.#partialBytes
  }

  #take(tail: Buffer): Buffer {
    if (this.#partial.length === 0) return tail
    const parts = this.#partial
    parts.push(tail)
    const whole = Buffer.concat(parts, this.#partialBytes + tail.length)
    this.#partial = []
    this.#partialBytes = 0
    return whole
  }

  #line(tail: Buffer, events: SseEvent[]): void {
    const bytes = this.#take(tail)
    const text = stripBom(decode(bytes))
    if (text.length > 0) {
      this.#lines.push(text)
      this.#eventBytes += bytes.length + 1
      return
    }
    // A blank line ends the event; one without lines is kept so that the output keeps its shape.
    events.push(parseEvent(this.#lines, true, true))
    this.#lines = []
    this.#eventBytes = 0
  }
}

function decode(bytes: Buffer): string {
  return bytes.length === 0 ? '' : bytes.toString('utf8')
}

/** Drops every byte-order mark at the start of a line. */
function stripBom(line: string): string {
  let i = 0
  while (i < line.length && line.charCodeAt(i) === 0xfeff) i++
  return i === 0 ? line : line.slice(i)
}

/** A field line split per the WHATWG rules: name, and value with one leading space dropped. Undefined for a comment. */
export function parseField(line: string): { name: string; value: string } | undefined {
  if (line.charCodeAt(0) === 0x3a /* : */) return undefined
  const colon = line.indexOf(':')
  if (colon < 0) return { name: line, value: '' }
  const value = line.charCodeAt(colon + 1) === 0x20 ? line.slice(colon + 2) : line.slice(colon + 1)
  return { name: line.slice(0, colon), value }
}

function isDataLine(line: string): boolean {
  return line.startsWith('data') && (line.length === 4 || line.charCodeAt(4) === 0x3a)
}

/** An event from its lines (already decoded, byte-order marks dropped). */
export function parseEvent(lines: readonly string[], terminated = true, lineEnded = true): SseEvent {
  let data: string[] | undefined
  let type: string | undefined
  for (const line of lines) {
    const f = parseField(line)
    if (!f) continue
    if (f.name === 'data') (data ??= []).push(f.value)
    else if (f.name === 'event') type = f.value
  }
  return { lines, data: data?.join('\n'), type, terminated, lineEnded }
}

/** The lines of an event that are not `data` lines (comments, event, id, retry, unknown fields). */
export function otherLines(ev: SseEvent): string[] {
  return ev.lines.filter((l) => !isDataLine(l))
}

/**
 * An event in canonical form. `data` replaces the data field (its lines go
 * where the first `data` line was); `others` replaces the other lines (they
 * go where the first of them was). Lines end in LF; the blank line follows
 * unless the event is the unterminated rest of a stream.
 */
export function serializeEvent(ev: SseEvent, data?: string, others?: readonly string[]): Buffer {
  const out: string[] = []
  let dataPlaced = false
  let othersPlaced = false
  const placeData = () => {
    if (data === undefined) return
    // Any line break (a restored value may hold a CR) starts a new data line, as every reader would split it.
    for (const d of data.split(/\r\n|\r|\n/)) out.push(`data: ${d}`)
    dataPlaced = true
  }
  for (const line of ev.lines) {
    if (isDataLine(line)) {
      if (data === undefined) out.push(line)
      else if (!dataPlaced) placeData()
    } else if (others === undefined) out.push(line)
    else if (!othersPlaced) {
      out.push(...others)
      othersPlaced = true
    }
  }
  if (!dataPlaced) placeData()
  if (others !== undefined && !othersPlaced) out.push(...others)
  let text = out.join('\n')
  if (ev.terminated) text += out.length > 0 ? '\n\n' : '\n'
  else if (ev.lineEnded && out.length > 0) text += '\n'
  return Buffer.from(text, 'utf8')
}

/** True when a text carries at least one SSE field line (`data`, `event`, `id` or `retry`). */
export function carriesSseFields(text: string): boolean {
  return SSE_FIELD_LINE.test(text)
}
const SSE_FIELD_LINE = /(?:^|[\r\n])\ufeff*(?:data|event|id|retry)(?:[:\r\n]|$)/

/**
 * The SSE event that ends a stream mid-way: `event: error` with the error
 * document in the caller's dialect (errorDocument in errors.ts) as its data.
 * The OpenAI SDK raises an APIError from `data.error`, the Anthropic SDK from
 * the whole document. MCP clients read JSON-RPC messages from `message`
 * events (the document is then a JSON-RPC error with the request's id).
 */
export function errorEvent(document: Record<string, unknown>, event: 'error' | 'message' = 'error'): Buffer {
  return Buffer.from(`event: ${event}\ndata: ${JSON.stringify(document)}\n\n`, 'utf8')
}
