/**
 * How much input a request carries, measured while its body is inspected
 * (inspection/inspect.ts, in this thread or a worker): the characters of
 * every string value, those values counted with gpt-tokenizer's o200k_base
 * encoding (OpenAI's current models) when asked, and the inline media
 * (data: URLs, base64 sources) set apart, since providers bill those by
 * their own rules and their base64 text says little.
 *
 * Keys are not counted; string values are, tool schemas and the system
 * prompt included (providers bill those as input too).
 */
import { createRequire } from 'node:module'
import type { JsonDocument } from '../json/document.ts'

export interface InputMeasure {
  /** Characters (UTF-16 code units) of the counted string values. */
  readonly chars: number
  /** Those values counted with o200k_base; absent when not asked for. */
  readonly tokens?: number
  /** String values counted (each costs a few tokens of framing at the provider). */
  readonly values: number
  /** Inline media values (data: URLs, base64 `data` of a `source`), not counted above. */
  readonly media: number
}

type Counter = (text: string) => number
let o200k: Counter | undefined

/** gpt-tokenizer's o200k_base token count, loaded on first use (a few MB of ranks). */
export function countO200k(text: string): number {
  if (!o200k) {
    const mod = createRequire(import.meta.url)('gpt-tokenizer/encoding/o200k_base') as { countTokens: Counter }
    o200k = mod.countTokens
  }
  return o200k(text)
}

/** Values whose text is not prose: the model name and enumerations that cost no input tokens of note. */
const SKIPPED_KEYS = new Set(['model', 'role', 'type', 'detail', 'media_type', 'format', 'tool_choice', 'service_tier', 'reasoning_effort', 'user', 'id', 'tool_call_id'])

function isMedia(leaf: { value: string; key: string | number | undefined; parent: { parent: unknown; key?: unknown } | undefined }): boolean {
  if (leaf.value.startsWith('data:') && leaf.value.length > 64) return true
  return leaf.key === 'data' && leaf.value.length > 64 && /^[A-Za-z0-9+/=\s]+$/.test(leaf.value.slice(0, 256))
}

export function measureInput(doc: JsonDocument, tokenize: boolean): InputMeasure {
  let chars = 0
  let values = 0
  let media = 0
  const texts: string[] = []
  for (const leaf of doc.leaves) {
    if (leaf.kind !== 'string') continue
    if (typeof leaf.key === 'string' && SKIPPED_KEYS.has(leaf.key)) continue
    if (isMedia(leaf as never)) {
      media++
      continue
    }
    values++
    chars += leaf.value.length
    if (tokenize) texts.push(leaf.value)
  }
  if (!tokenize) return { chars, values, media }
  // One call over the values joined by newlines: each value starts a new token.
  return { chars, values, media, tokens: texts.length === 0 ? 0 : countO200k(texts.join('\n')) }
}
