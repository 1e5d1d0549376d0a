/**
 * What redaction may leave unscanned, by positive identification only.
 *
 * Everything a provider or a caller decodes is scanned, keys and numbers
 * included, except values that are provably not free text:
 * - an enumerated protocol field (`role`, `type`, `finish_reason`, …) whose
 *   value is one of the values that field can take; any other value of the
 *   same field is scanned like everything else;
 * - a base64 payload (a `data:` URL or a bare base64 string) that is valid
 *   base64 from end to end and whose decoded bytes start with the signature
 *   of an image or audio format. Text-like payloads (text/plain, JSON, PDF,
 *   anything without such a signature) are scanned, decoded.
 */

/** Values each enumerated field can take in the OpenAI and Anthropic APIs (requests, responses, stream events). */
const ENUMERATED: Readonly<Record<string, ReadonlySet<string>>> = {
  role: new Set(['system', 'user', 'assistant', 'tool', 'developer', 'function']),
  object: new Set(['chat.completion', 'chat.completion.chunk', 'text_completion', 'response', 'list', 'embedding', 'model']),
  finish_reason: new Set(['stop', 'length', 'tool_calls', 'content_filter', 'function_call']),
  stop_reason: new Set(['end_turn', 'max_tokens', 'stop_sequence', 'tool_use', 'pause_turn', 'refusal']),
  status: new Set(['completed', 'in_progress', 'incomplete', 'failed', 'queued', 'cancelled']),
  detail: new Set(['auto', 'low', 'high']),
  format: new Set(['wav', 'mp3', 'flac', 'opus', 'pcm16', 'aac']),
  encoding_format: new Set(['float', 'base64']),
  reasoning_effort: new Set(['minimal', 'low', 'medium', 'high']),
  service_tier: new Set(['auto', 'default', 'flex', 'priority', 'scale', 'standard_only']),
  media_type: new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'application/pdf', 'text/plain']),
  type: new Set([
    // message content parts and tools
    'text',
    'image',
    'image_url',
    'input_text',
    'input_image',
    'input_audio',
    'input_file',
    'output_text',
    'output_audio',
    'refusal',
    'file',
    'document',
    'base64',
    'url',
    'function',
    'custom',
    'tool_use',
    'tool_result',
    'thinking',
    'redacted_thinking',
    'message',
    'function_call',
    'function_call_output',
    'reasoning',
    'summary_text',
    'json_object',
    'json_schema',
    'ephemeral',
    'auto',
    'any',
    'none',
    'tool',
    'enabled',
    'disabled',
    'error',
    // Anthropic stream events
    'message_start',
    'message_delta',
    'message_stop',
    'content_block_start',
    'content_block_delta',
    'content_block_stop',
    'ping',
    'text_delta',
    'input_json_delta',
    'thinking_delta',
    'signature_delta',
    // OpenAI Responses stream events
    'response.created',
    'response.in_progress',
    'response.completed',
    'response.failed',
    'response.incomplete',
    'response.output_item.added',
    'response.output_item.done',
    'response.content_part.added',
    'response.content_part.done',
    'response.output_text.delta',
    'response.output_text.done',
    'response.refusal.delta',
    'response.refusal.done',
    'response.function_call_arguments.delta',
    'response.function_call_arguments.done',
    'response.reasoning_summary_text.delta',
    'response.reasoning_summary_text.done',
  ]),
}

/** True when `key` is an enumerated protocol field and `value` one of its values. */
export function isEnumeratedValue(key: string | number | undefined, value: string): boolean {
  if (typeof key !== 'string') return false
  const allowed = Object.hasOwn(ENUMERATED, key) ? ENUMERATED[key] : undefined
  return allowed !== undefined && allowed.has(value)
}

/** Leading bytes of the binary formats model APIs take inline (images and audio). */
const SIGNATURES: readonly { readonly kind: string; readonly at: number; readonly bytes: readonly number[] }[] = [
  { kind: 'image/png', at: 0, bytes: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] },
  { kind: 'image/jpeg', at: 0, bytes: [0xff, 0xd8, 0xff] },
  { kind: 'image/gif', at: 0, bytes: [0x47, 0x49, 0x46, 0x38] },
  { kind: 'image/webp', at: 8, bytes: [0x57, 0x45, 0x42, 0x50] },
  { kind: 'audio/wav', at: 8, bytes: [0x57, 0x41, 0x56, 0x45] },
  { kind: 'audio/flac', at: 0, bytes: [0x66, 0x4c, 0x61, 0x43] },
  { kind: 'audio/ogg', at: 0, bytes: [0x4f, 0x67, 0x67, 0x53] },
  { kind: 'audio/mpeg', at: 0, bytes: [0x49, 0x44, 0x33] },
  { kind: 'audio/mp4', at: 4, bytes: [0x66, 0x74, 0x79, 0x70] },
]
/** RIFF containers (WebP, WAV) carry their format at offset 8, after "RIFF" and a size. */
const RIFF = [0x52, 0x49, 0x46, 0x46]

const BASE64_BODY = /^[A-Za-z0-9+/]*={0,2}$/
const DATA_URL_HEAD = /^data:[a-z0-9.+-]+\/[a-z0-9.+-]+(?:;[a-z0-9-]+=[a-z0-9.+-]+)*;base64,/i

/**
 * The binary format of a base64 payload (a `data:` URL, or a string that is
 * base64 from end to end), or undefined when it is not provably binary.
 * Only the first 24 base64 characters are decoded; the rest is checked for
 * the alphabet and padding only.
 */
export function binaryPayloadKind(value: string): string | undefined {
  if (value.length < 16) return undefined
  let payload = value
  if (value.charCodeAt(0) === 0x64 /* d */ && value.startsWith('data:')) {
    const head = DATA_URL_HEAD.exec(value.slice(0, 256))
    if (!head) return undefined
    payload = value.slice(head[0].length)
  }
  if (payload.length < 16 || payload.length % 4 !== 0 || !BASE64_BODY.test(payload)) return undefined
  const bytes = Buffer.from(payload.slice(0, 24), 'base64')
  for (const s of SIGNATURES) {
    if (s.at === 8 && !RIFF.every((b, i) => bytes[i] === b)) continue
    if (s.bytes.every((b, i) => bytes[s.at + i] === b)) return s.kind
  }
  return undefined
}
