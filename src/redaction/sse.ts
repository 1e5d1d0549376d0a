/**
 * Server-sent events framing at the byte level. Events end at a blank line
 * (LF, CRLF or CR line endings); an event is only handed on once complete, so
 * a UTF-8 character or an event split across chunks is never seen in part.
 */

export interface SseEvent {
  /** The event's bytes exactly as received, blank line included. */
  readonly raw: Buffer
  /** Lines without terminators (the blank line excluded). */
  readonly lines: readonly string[]
  /** The data field: `data:` lines joined with "\n", or undefined when there is none. */
  readonly data: string | undefined
}

const LF = 0x0a
const CR = 0x0d

export class SseFramer {
  #buf: Buffer = Buffer.alloc(0)
  /** Where the scan for line ends resumes, and where the current line starts. */
  #pos = 0
  #lineStart = 0

  /** Complete events in `chunk` (with what was held from earlier chunks). */
  push(chunk: Buffer): SseEvent[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk])
    const buf = this.#buf
    const events: SseEvent[] = []
    let eventStart = 0
    let i = this.#pos
    let lineStart = this.#lineStart
    while (i < buf.length) {
      const c = buf[i]!
      if (c !== LF && c !== CR) {
        // Skip to the next line end quickly.
        const lf = buf.indexOf(LF, i)
        const cr = buf.indexOf(CR, i)
        const next = lf < 0 ? cr : cr < 0 ? lf : Math.min(lf, cr)
        if (next < 0) {
          i = buf.length
          break
        }
        i = next
        continue
      }
      let next = i + 1
      if (c === CR) {
        if (next >= buf.length) break // a CRLF may be split: wait for the next byte
        if (buf[next] === LF) next++
      }
      if (i === lineStart) {
        events.push(parseEvent(buf.subarray(eventStart, next)))
        eventStart = next
      }
      lineStart = next
      i = next
    }
    this.#buf = buf.subarray(eventStart)
    this.#pos = i - eventStart
    this.#lineStart = lineStart - eventStart
    return events
  }

  /** Bytes of an event that never ended (the stream closed without a blank line). */
  flush(): SseEvent | undefined {
    const rest = this.#buf
    this.#buf = Buffer.alloc(0)
    this.#pos = 0
    this.#lineStart = 0
    return rest.length ? parseEvent(rest) : undefined
  }

  /** Bytes held while waiting for the end of an event. */
  get pendingBytes(): number {
    return this.#buf.length
  }
}

export function parseEvent(raw: Buffer): SseEvent {
  const text = raw.toString('utf8')
  const lines = text.split(/\r\n|\r|\n/)
  while (lines.length && lines[lines.length - 1] === '') lines.pop()
  let data: string[] | undefined
  for (const line of lines) {
    if (line.startsWith('data:') || line === 'data') {
      const v = line.slice(5)
      ;(data ??= []).push(v.startsWith(' ') ? v.slice(1) : v)
    }
  }
  return { raw, lines, data: data?.join('\n') }
}

/** An event with its data field replaced; the other lines keep their order. */
export function serializeEvent(ev: SseEvent, data: string): Buffer {
  const out: string[] = []
  let placed = false
  for (const line of ev.lines) {
    if (line.startsWith('data:') || line === 'data') {
      if (!placed) for (const d of data.split('\n')) out.push(`data: ${d}`)
      placed = true
    } else out.push(line)
  }
  if (!placed) for (const d of data.split('\n')) out.push(`data: ${d}`)
  return Buffer.from(out.join('\n') + '\n\n', 'utf8')
}

/** A well-formed SSE error event both OpenAI and Anthropic clients surface as an error. */
export function errorEvent(payload: { code: string; message: string; requestId: string; details: Record<string, unknown> }): Buffer {
  const body = {
    type: 'error',
    error: { type: 'modelgate_error', code: payload.code, message: payload.message, request_id: payload.requestId, ...payload.details },
  }
  return Buffer.from(`event: error\ndata: ${JSON.stringify(body)}\n\n`, 'utf8')
}
