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
 *
 * Which values each field can take is each provider API's own knowledge
 * (its module under providers/apis/); ENUMERATED_VALUES gathers them.
 */
import { ENUMERATED_VALUES } from '../providers/apis/index.ts'

/** True when `key` is an enumerated protocol field and `value` one of its values. */
export function isEnumeratedValue(key: string | number | undefined, value: string): boolean {
  if (typeof key !== 'string') return false
  const allowed = Object.hasOwn(ENUMERATED_VALUES, key) ? ENUMERATED_VALUES[key] : undefined
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
