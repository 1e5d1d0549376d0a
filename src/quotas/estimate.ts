/**
 * Token estimates: what a request reserves before it runs, and what a
 * stream produced when no usage report arrives.
 *
 * - Input: gpt-tokenizer (o200k_base) over the body's string values for
 *   OpenAI-family APIs (OpenAI, Azure OpenAI, OpenAI-compatible servers);
 *   for the others (Anthropic) characters ÷ `charsPerToken`. A model listed
 *   under `quotas.estimation.models` with its own `charsPerToken` uses that
 *   ratio whatever its API. One token more per string value (message
 *   framing), and MEDIA_TOKENS per inline image or file.
 * - Output reserve: the request's max_tokens (max_completion_tokens,
 *   max_output_tokens), else the model's `defaultMaxTokens`, else
 *   `quotas.estimation.defaultMaxTokens`. Embeddings reserve no output.
 * - Streamed output: each text delta (providers/apis: each API's `outputText`)
 *   counted the same way as input.
 */
import { modelMatcher } from '../config/sections/providers.ts'
import type { QuotasConfig } from '../config/sections/quotas.ts'
import type { ParsedRequest } from '../providers/types.ts'
import { countO200k } from './measure.ts'

/** Tokens charged per inline image or file (data: URL, base64 source): about what a large image costs at OpenAI and Anthropic. */
export const MEDIA_TOKENS = 1600

export interface Estimator {
  /** Input tokens of a parsed request. */
  input(req: ParsedRequest): number
  /** Output tokens to reserve. */
  outputReserve(req: ParsedRequest): number
  /** A counter for streamed text of this request's model (tokens of one delta, or accumulated characters). */
  textCounter(req: ParsedRequest): TextCounter
}

/** Counts streamed text; `tokens` never falls back to zero once any text was seen. */
export interface TextCounter {
  add(text: string): void
  readonly tokens: number
}

export function compileEstimator(e: QuotasConfig['estimation']): Estimator {
  const models = e.models.map((m) => ({ matches: modelMatcher(m.match), charsPerToken: m.charsPerToken, defaultMaxTokens: m.defaultMaxTokens }))
  const entry = (model: string) => models.find((m) => m.matches(model))
  const ratioOf = (req: ParsedRequest): number | undefined => entry(req.model)?.charsPerToken ?? (req.provider === 'anthropic' ? e.charsPerToken : undefined)
  return {
    input(req) {
      const m = req.input
      if (!m) return 1
      const ratio = ratioOf(req)
      const text = ratio === undefined && m.tokens !== undefined ? m.tokens : Math.ceil(m.chars / (ratio ?? e.charsPerToken))
      return Math.max(1, text + m.values + m.media * MEDIA_TOKENS)
    },
    outputReserve(req) {
      if (req.operation === 'embedding') return 0
      return req.maxTokens ?? entry(req.model)?.defaultMaxTokens ?? e.defaultMaxTokens
    },
    textCounter(req) {
      const ratio = ratioOf(req)
      if (ratio === undefined) {
        let tokens = 0
        return {
          add(text) {
            if (text.length > 0) tokens += Math.max(1, countO200k(text))
          },
          get tokens() {
            return tokens
          },
        }
      }
      let chars = 0
      return {
        add(text) {
          chars += text.length
        },
        get tokens() {
          return chars === 0 ? 0 : Math.max(1, Math.ceil(chars / ratio))
        },
      }
    },
  }
}
