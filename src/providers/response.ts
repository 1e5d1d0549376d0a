/**
 * Reading what the provider reports back: the response model and token usage,
 * from JSON bodies and from SSE streams, where each API's module says
 * (providers/apis/: OpenAI chunks, Responses and Anthropic events).
 * Streams are framed by the same framer the redaction of responses uses, so
 * both read the same events (those the SDKs read).
 */
import { carriesSseFields, SseFramer, type SseEvent } from '../redaction/sse.ts'
import { absorbResponseObject, type ResponseFacts } from './apis/index.ts'

export type { ResponseFacts }

/** Incremental SSE reader: feed raw chunks (UTF-8 split anywhere), facts update as events complete. */
export class SseFactsReader {
  readonly facts: ResponseFacts = { model: undefined, usage: { input: undefined, output: undefined } }
  readonly #framer = new SseFramer()
  /** Events with a data field seen so far, [DONE] included. */
  #events = 0

  feed(chunk: Buffer, end: boolean): void {
    const events = this.#framer.push(chunk)
    if (end) {
      // The rest of a stream that ended without a blank line: the SDKs read it, so it counts.
      const rest = this.#framer.flush()
      if (rest) events.push(rest)
    }
    for (const ev of events) this.#absorb(ev)
  }

  get events(): number {
    return this.#events
  }

  #absorb(ev: SseEvent): void {
    const data = ev.data
    if (data === undefined) return
    this.#events++
    // Usage and model appear in small events; huge content deltas are not parsed.
    if (data === '[DONE]' || data.length > 256 * 1024) return
    try {
      absorbResponseObject(this.facts, JSON.parse(data))
    } catch {
      // not JSON: nothing to learn from it
    }
  }
}

/**
 * The facts of a whole (buffered) response body: a JSON document, or SSE
 * frames (a stream the provider declared as another type). Undefined when the
 * body is neither.
 */
export function bodyFacts(body: Buffer): ResponseFacts | undefined {
  if (body.length === 0) return undefined
  const text = body.toString('utf8')
  try {
    const facts: ResponseFacts = { model: undefined, usage: { input: undefined, output: undefined } }
    absorbResponseObject(facts, JSON.parse(text))
    return facts
  } catch {
    // not JSON
  }
  if (!carriesSseFields(text)) return undefined
  const reader = new SseFactsReader()
  reader.feed(body, true)
  return reader.facts
}
