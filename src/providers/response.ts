/**
 * Reading what the provider reports back: the response model and token usage,
 * from JSON bodies and from SSE streams (OpenAI chunks, Anthropic events).
 */
import { createParser, type EventSourceParser } from 'eventsource-parser'
import type { TokenUsage } from './types.ts'

export interface ResponseFacts {
  model: string | undefined
  usage: TokenUsage
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined)
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Folds one JSON object (a whole response or one SSE event) into the facts. */
export function absorbResponseObject(facts: ResponseFacts, obj: unknown): void {
  if (!isObj(obj)) return
  if (typeof obj.model === 'string') facts.model = obj.model
  // Anthropic message_start carries the message; OpenAI responses events carry `response`.
  const inner = isObj(obj.message) ? obj.message : isObj(obj.response) ? obj.response : undefined
  if (inner) absorbResponseObject(facts, inner)
  const u = obj.usage
  if (isObj(u)) {
    const input = num(u.prompt_tokens) ?? num(u.input_tokens)
    const output = num(u.completion_tokens) ?? num(u.output_tokens)
    if (input !== undefined) facts.usage.input = input
    if (output !== undefined) facts.usage.output = output
  }
}

/** Incremental SSE reader: feed raw chunks (UTF-8 split anywhere), facts update as events complete. */
export class SseFactsReader {
  readonly facts: ResponseFacts = { model: undefined, usage: { input: undefined, output: undefined } }
  readonly #decoder = new TextDecoder('utf-8')
  readonly #parser: EventSourceParser
  /** Events seen so far (complete SSE events, including [DONE]). */
  #events = 0

  constructor() {
    this.#parser = createParser({
      onEvent: (ev) => {
        this.#events++
        if (ev.data === '[DONE]') return
        // Usage and model appear in small events; skip parsing of huge content deltas beyond a bound.
        if (ev.data.length > 256 * 1024) return
        try {
          absorbResponseObject(this.facts, JSON.parse(ev.data))
        } catch {
          // not JSON: nothing to learn from it
        }
      },
    })
  }

  feed(chunk: Buffer, end: boolean): void {
    this.#parser.feed(this.#decoder.decode(chunk, { stream: !end }))
    if (end) this.#parser.reset({ consume: true })
  }

  get events(): number {
    return this.#events
  }
}
