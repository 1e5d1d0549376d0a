/**
 * Parser for Envoy's `x-forwarded-client-cert` header. Elements are separated
 * by `,`, key/value pairs by `;`, keys are case-insensitive; `Subject`, `Cert`
 * and `Chain` values are double-quoted with `\"` escapes, and a URI SAN list
 * yields one `URI=` pair per SAN. Malformed input is an error, never a guess.
 */

/** One element: lower-case key → values in order of appearance. */
export type XfccElement = ReadonlyMap<string, readonly string[]>

export type XfccParseResult = { readonly ok: true; readonly elements: readonly XfccElement[] } | { readonly ok: false; readonly reason: string }

const MAX_HEADER_BYTES = 64 * 1024
const KEY = /^[A-Za-z][A-Za-z0-9_-]*$/

export function parseXfcc(header: string): XfccParseResult {
  if (header.length === 0) return { ok: false, reason: 'empty header' }
  if (header.length > MAX_HEADER_BYTES) return { ok: false, reason: 'header too long' }
  const elements: Map<string, string[]>[] = []
  let current = new Map<string, string[]>()
  let i = 0
  const n = header.length
  const finishElement = () => {
    if (current.size === 0) return false
    elements.push(current)
    current = new Map()
    return true
  }
  while (i < n) {
    // key
    const eq = header.indexOf('=', i)
    if (eq === -1) return { ok: false, reason: `pair without "=" at offset ${i}` }
    const key = header.slice(i, eq).trim()
    if (!KEY.test(key)) return { ok: false, reason: `invalid key at offset ${i}` }
    i = eq + 1
    // value
    let value = ''
    if (header[i] === '"') {
      i++
      let closed = false
      while (i < n) {
        const c = header[i]!
        if (c === '\\') {
          if (i + 1 >= n) return { ok: false, reason: 'dangling escape' }
          value += header[i + 1]
          i += 2
          continue
        }
        if (c === '"') {
          closed = true
          i++
          break
        }
        value += c
        i++
      }
      if (!closed) return { ok: false, reason: 'unterminated quoted value' }
    } else {
      let j = i
      while (j < n && header[j] !== ';' && header[j] !== ',') {
        if (header[j] === '"') return { ok: false, reason: `unexpected quote at offset ${j}` }
        j++
      }
      value = header.slice(i, j).trim()
      i = j
    }
    const k = key.toLowerCase()
    const list = current.get(k)
    if (list) list.push(value)
    else current.set(k, [value])
    // separator
    while (i < n && header[i] === ' ') i++
    if (i >= n) break
    const sep = header[i]
    i++
    while (i < n && header[i] === ' ') i++
    if (sep === ',') finishElement()
    else if (sep !== ';') return { ok: false, reason: `unexpected character at offset ${i - 1}` }
    if (i >= n) return { ok: false, reason: 'trailing separator' }
  }
  if (!finishElement() && elements.length === 0) return { ok: false, reason: 'no elements' }
  return { ok: true, elements }
}
