/**
 * Validators: checksums and shape rules that keep detectors precise. Each is
 * a pure function of the candidate value (and, where needed, its surroundings).
 */
import { isIPv6 } from 'node:net'
import { isValidBIC, isValidIBAN } from 'ibantools'

const asciiCounts = new Int32Array(128)

/** Shannon entropy in bits per character (code point). */
export function shannonEntropy(s: string): number {
  if (s.length === 0) return 0
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) < 128) continue
    // Not ASCII: count code points in a map.
    const counts = new Map<string, number>()
    let n = 0
    for (const ch of s) {
      counts.set(ch, (counts.get(ch) ?? 0) + 1)
      n++
    }
    return entropyOf(counts.values(), n)
  }
  const counts = asciiCounts
  for (let i = 0; i < s.length; i++) counts[s.charCodeAt(i)]!++
  let h = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    const k = counts[c]!
    if (k === 0) continue
    const p = k / s.length
    h -= p * Math.log2(p)
    counts[c] = 0
  }
  return h
}

function entropyOf(counts: Iterable<number>, n: number): number {
  let h = 0
  for (const c of counts) {
    const p = c / n
    h -= p * Math.log2(p)
  }
  return h
}

/** Luhn (mod 10) checksum over the digits of `s` (other characters ignored). */
export function luhnValid(s: string): boolean {
  let sum = 0
  let double = false
  let digits = 0
  for (let i = s.length - 1; i >= 0; i--) {
    const c = s.charCodeAt(i) - 48
    if (c < 0 || c > 9) continue
    digits++
    let d = c
    if (double) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
    double = !double
  }
  return digits > 0 && sum % 10 === 0
}

export function digitsOnly(s: string): string {
  let out = ''
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 48 && c <= 57) out += s[i]
  }
  return out
}

function allSame(s: string): boolean {
  for (let i = 1; i < s.length; i++) if (s[i] !== s[0]) return false
  return true
}

/** The separators used between digit groups: at most one kind, never doubled. */
function consistentSeparators(s: string): boolean {
  let sep: string | undefined
  let prevSep = false
  for (const ch of s) {
    if (ch >= '0' && ch <= '9') {
      prevSep = false
      continue
    }
    if (prevSep) return false
    if (sep !== undefined && ch !== sep) return false
    sep = ch
    prevSep = true
  }
  return true
}

/**
 * Issuer identification number (IIN) ranges of the card networks and the
 * lengths each issues, from the networks' published ranges (ISO/IEC 7812
 * numbering): Visa, Mastercard, American Express, Discover, UnionPay, JCB,
 * Diners Club, Maestro, Mir, RuPay, Verve, Troy, Dankort, InstaPayment.
 */
function cardIssuerValid(d: string): boolean {
  const n = d.length
  const p2 = Number(d.slice(0, 2))
  const p3 = Number(d.slice(0, 3))
  const p4 = Number(d.slice(0, 4))
  const p6 = Number(d.slice(0, 6))
  const between = (lo: number, hi: number) => n >= lo && n <= hi
  if (d[0] === '4') return n === 13 || n === 16 || n === 19 // Visa
  if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return n === 16 // Mastercard
  if (p2 === 34 || p2 === 37) return n === 15 // American Express
  if (p4 >= 2200 && p4 <= 2204) return between(16, 19) // Mir
  if (p4 === 6011 || (p3 >= 644 && p3 <= 649) || p2 === 65 || (p6 >= 622126 && p6 <= 622925)) return between(16, 19) // Discover (and co-branded UnionPay)
  if (p2 === 62) return between(16, 19) // UnionPay
  if (p4 >= 3528 && p4 <= 3589) return between(16, 19) // JCB
  if (p2 === 36) return between(14, 19) // Diners Club International
  if (p3 >= 300 && p3 <= 305) return n === 14 || between(16, 19) // Diners Club Carte Blanche
  if (p4 === 3095 || p2 === 38 || p2 === 39) return between(16, 19) // Diners Club
  if ([5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763].includes(p4)) return between(12, 19) // Maestro
  if ((p6 >= 506099 && p6 <= 506198) || (p6 >= 507865 && p6 <= 507964) || (p6 >= 650002 && p6 <= 650027)) return n === 16 || n === 18 || n === 19 // Verve
  if (p2 === 60 || p2 === 81 || p2 === 82 || p3 === 508) return n === 16 // RuPay
  if (p4 === 9792) return n === 16 // Troy
  if (p4 === 5019) return n === 16 // Dankort
  if (p3 >= 637 && p3 <= 639) return n === 16 // InstaPayment
  return false
}

/** Separator runs a card number may be written with: spaces, tabs, line breaks, dots and dashes, up to four of them. */
const CARD_GAP = /^[ \t\r\n.-]{1,4}$/

/**
 * Digit groups laid out the way cards are printed: fours with a shorter last
 * group (4-4-4-4, 4-4-4-4-3, 4-4-4-1), or 4-6-5 and 4-6-4 (American
 * Express, Diners Club).
 */
function cardLayout(sizes: readonly number[]): boolean {
  if (sizes.length === 1) return true
  if (sizes.length === 3 && sizes[0] === 4 && sizes[1] === 6 && (sizes[2] === 5 || sizes[2] === 4)) return true
  for (let i = 0; i < sizes.length - 1; i++) if (sizes[i] !== 4) return false
  const last = sizes[sizes.length - 1]!
  return last >= 1 && last <= 4
}

/** Digit groups of a value with the separator run before each (empty for the first). */
function digitGroupsOf(value: string): { start: number; end: number; gap: string }[] {
  const out: { start: number; end: number; gap: string }[] = []
  let prevEnd = 0
  for (let i = 0; i < value.length; ) {
    const c = value.charCodeAt(i)
    if (c < 48 || c > 57) {
      i++
      continue
    }
    const s = i
    while (i < value.length && value.charCodeAt(i) >= 48 && value.charCodeAt(i) <= 57) i++
    out.push({ start: s, end: i, gap: value.slice(prevEnd, s) })
    prevEnd = i
  }
  return out
}

/**
 * Payment card number: 12–19 digits with an issuer prefix and a length that
 * network issues, Luhn, not one digit repeated; written without separators,
 * with one separator character throughout ("4111-1111-1111-1111"), or with
 * runs of up to four spaces, tabs, line breaks, dots or dashes between
 * groups laid out as cards are printed ("4111  1111\n1111.1111").
 */
export function validCardNumber(value: string): boolean {
  const d = digitsOnly(value)
  if (d.length < 12 || d.length > 19) return false
  if (allSame(d)) return false
  if (!cardIssuerValid(d) || !luhnValid(d)) return false
  if (consistentSeparators(value)) return true
  const groups = digitGroupsOf(value)
  return groups.every((g, i) => i === 0 || CARD_GAP.test(g.gap)) && cardLayout(groups.map((g) => g.end - g.start))
}

/**
 * A card number inside a run of digit groups: the whole run; else, when the
 * run spans lines, its first line ("4111 1111 1111 1111\n5555 …", a list of
 * cards); else the longest valid run of leading or trailing groups laid out
 * as a card when what is left is at most seven digits ("4111 1111 1111 1111
 * 12 27" with its expiry date; "2 4111 1111 1111 1111" after a quantity).
 * (The scanner tries a rejected run again from each of its separators, so a
 * card after other numbers, "536-22-1234  4111 1111 1111 1111", is found on
 * a later try.)
 */
export function cardInRun(value: string): boolean | { start: number; end: number } {
  let digits = 0
  let lineEnd = -1
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c >= 48 && c <= 57) digits++
    else if ((c === 0x0a || c === 0x0d) && lineEnd < 0) lineEnd = i
  }
  if (digits < 12) return false
  if (digits <= 19 && validCardNumber(value)) return true
  // Longer than a card and seven more digits: its first line, else the first groups laid out as a card
  // anywhere in it ("4111111111111111 5555555555554444", cards side by side; the scanner looks again after it).
  if (digits > 26) {
    if (lineEnd >= 0) {
      let end = lineEnd
      while (end > 0 && (value.charCodeAt(end - 1) < 48 || value.charCodeAt(end - 1) > 57)) end--
      const first = cardInRun(value.slice(0, end))
      if (first !== false) return first === true ? { start: 0, end } : first
    }
    return firstCardWindow(value, digitGroupsOf(value)) ?? false
  }
  const groups = digitGroupsOf(value)
  if (groups.length < 2) return false
  const lineBreak = groups.findIndex((g, i) => i > 0 && /[\r\n]/.test(g.gap))
  if (lineBreak > 0) {
    const line = value.slice(0, groups[lineBreak - 1]!.end)
    if (validCardNumber(line)) return { start: 0, end: line.length }
    const inLine = edgeCard(value, groups.slice(0, lineBreak))
    if (inLine) return inLine
  }
  return edgeCard(value, groups) ?? false
}

/**
 * The first run of whole digit groups, anywhere in a long run, that is laid
 * out as a card, joined by card separators and a valid card number.
 */
function firstCardWindow(value: string, groups: readonly { start: number; end: number; gap: string }[]): { start: number; end: number } | undefined {
  for (let from = 0; from < groups.length; from++) {
    let digits = 0
    for (let to = from + 1; to <= groups.length; to++) {
      const g = groups[to - 1]!
      if (to - 1 > from && !CARD_GAP.test(g.gap)) break
      digits += g.end - g.start
      if (digits > 19) break
      if (digits < 12) continue
      const part = groups.slice(from, to)
      if (!cardLayout(part.map((p) => p.end - p.start))) continue
      if (validCardNumber(value.slice(groups[from]!.start, g.end))) return { start: groups[from]!.start, end: g.end }
    }
  }
  return undefined
}

/** The longest card of leading or trailing groups, leaving at most seven digits. */
function edgeCard(value: string, groups: readonly { start: number; end: number; gap: string }[]): { start: number; end: number } | undefined {
  const size = (from: number, to: number) => {
    let n = 0
    for (let k = from; k < to; k++) n += groups[k]!.end - groups[k]!.start
    return n
  }
  const laidOut = (from: number, to: number): boolean => {
    const part = groups.slice(from, to)
    if (!part.every((g, i) => i === 0 || CARD_GAP.test(g.gap)) || !cardLayout(part.map((g) => g.end - g.start))) return false
    return validCardNumber(value.slice(part[0]!.start, part[part.length - 1]!.end))
  }
  const total = size(0, groups.length)
  for (let to = groups.length - 1; to >= 1; to--) {
    const digits = size(0, to)
    if (total - digits > 7) break
    if (digits >= 12 && digits <= 19 && laidOut(0, to)) return { start: groups[0]!.start, end: groups[to - 1]!.end }
  }
  for (let from = 1; from < groups.length; from++) {
    const digits = size(from, groups.length)
    if (total - digits > 7) break
    if (digits >= 12 && digits <= 19 && laidOut(from, groups.length)) return { start: groups[from]!.start, end: groups[groups.length - 1]!.end }
  }
  return undefined
}

/**
 * IBAN: country format and mod-97 (ibantools). When the match ran on into
 * following text ("DE89 3704 … 00 ABCD"), the longest valid prefix that ends
 * at a group boundary is accepted instead.
 */
export function validIban(value: string): boolean | number {
  const compact = (s: string) => s.replace(/ /g, '')
  if (isValidIBAN(compact(value))) return true
  for (let end = value.lastIndexOf(' '); end > 0; end = value.lastIndexOf(' ', end - 1)) {
    const prefix = value.slice(0, end)
    if (isValidIBAN(compact(prefix))) return end
  }
  return false
}

export function validBic(value: string): boolean {
  return isValidBIC(value)
}

/**
 * US Social Security Number rules (SSA): area 000, 666 and 900–999 are never
 * issued; group 00 and serial 0000 are invalid; one delimiter kind only; all
 * digits the same and the numbers used in advertising are rejected.
 */
export function validSsn(value: string): boolean {
  if (!consistentSeparators(value)) return false
  const d = digitsOnly(value)
  if (d.length !== 9) return false
  const area = Number(d.slice(0, 3))
  const group = Number(d.slice(3, 5))
  const serial = Number(d.slice(5))
  if (area === 0 || area === 666 || area >= 900) return false
  if (group === 0 || serial === 0) return false
  if (allSame(d)) return false
  if (d === '123456789' || d === '078051120' || d === '219099999') return false
  return true
}

/** ABA routing number: 9 digits, weights 3-7-1, first two digits a valid Federal Reserve range. */
export function validAbaRouting(value: string): boolean {
  const d = digitsOnly(value)
  if (d.length !== 9 || allSame(d)) return false
  const p = Number(d.slice(0, 2))
  if (!((p >= 0 && p <= 12) || (p >= 21 && p <= 32) || (p >= 61 && p <= 72) || p === 80)) return false
  const w = [3, 7, 1, 3, 7, 1, 3, 7, 1]
  let sum = 0
  for (let i = 0; i < 9; i++) sum += Number(d[i]) * w[i]!
  return sum % 10 === 0
}

/** US National Provider Identifier: 10 digits, Luhn over the prefix 80840 + the number. */
export function validNpi(value: string): boolean {
  const d = digitsOnly(value)
  if (d.length !== 10 || (d[0] !== '1' && d[0] !== '2')) return false
  return luhnValid('80840' + d)
}

/** DEA registration number: two letters, seven digits, check digit (d1+d3+d5 + 2·(d2+d4+d6)) mod 10. */
export function validDea(value: string): boolean {
  if (!/^[A-Z][A-Z9]\d{7}$/.test(value)) return false
  const d = value.slice(2).split('').map(Number)
  const check = (d[0]! + d[2]! + d[4]! + 2 * (d[1]! + d[3]! + d[5]!)) % 10
  return check === d[6]
}

/** UK National Insurance number prefixes that are never allocated. */
const NINO_BAD_PREFIX = new Set(['BG', 'GB', 'KN', 'NK', 'NT', 'TN', 'ZZ'])
export function validNino(value: string): boolean {
  const v = value.replace(/ /g, '')
  if (v.length !== 9) return false
  if (NINO_BAD_PREFIX.has(v.slice(0, 2))) return false
  return !allSame(v.slice(2, 8))
}

/** A dotted IPv4 address, as four octets, or undefined. */
export function ipv4Octets(value: string): number[] | undefined {
  const parts = value.split('.')
  if (parts.length !== 4) return undefined
  const out: number[] = []
  for (const p of parts) {
    if (p.length === 0 || p.length > 3 || (p.length > 1 && p[0] === '0')) return undefined
    const n = Number(p)
    if (!Number.isInteger(n) || n > 255) return undefined
    out.push(n)
  }
  return out
}

/** Private (RFC 1918), carrier-grade NAT (RFC 6598) or unique-local ranges: infrastructure, not people. */
export function isInternalIpv4(o: readonly number[]): boolean {
  const [a, b] = o as [number, number]
  return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127)
}

/** Addresses that identify nobody: unspecified, loopback, link-local, broadcast, multicast, documentation ranges. */
export function isNonIdentifyingIpv4(o: readonly number[]): boolean {
  const [a, b, c] = o as [number, number, number]
  if (a === 0 || a === 127 || a >= 224) return true
  if (a === 169 && b === 254) return true
  if ((a === 192 && b === 0 && c === 2) || (a === 198 && b === 51 && c === 100) || (a === 203 && b === 0 && c === 113)) return true
  return false
}

/**
 * Rejects dotted quads that are really version numbers or OIDs: preceded by
 * "v"/"version", or part of a longer dotted number.
 */
export function ipv4InContext(site: { text: string; start: number; end: number }): boolean {
  const { text, start, end } = site
  const before = text.slice(Math.max(0, start - 12), start)
  if (/(?:\bv|version|ver\.?|release|build|oid)\s*[:=]?\s*$/i.test(before)) return false
  if (start >= 2 && text[start - 1] === '.' && /\d/.test(text[start - 2]!)) return false
  if (end + 1 < text.length && text[end] === '.' && /\d/.test(text[end + 1]!)) return false
  return true
}

export function validIpv6(value: string): boolean {
  if (!isIPv6(value)) return false
  const v = value.toLowerCase()
  if (v === '::' || v === '::1' || v.startsWith('fe80:') || v.startsWith('2001:db8:') || v.startsWith('2001:0db8:')) return false
  // Needs at least three groups with content: "a::b" is too weak to call an address.
  return v.split(':').filter((g) => g.length > 0).length >= 3
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const HEX_DIGEST_RE = /^(?:[0-9a-f]{7,12}|[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64})$/
export function isUuid(v: string): boolean {
  return UUID_RE.test(v)
}
/** Lower-case hex strings with the lengths of git SHAs (short and full), MD5, SHA-1 and SHA-256 digests. */
export function isHexDigest(v: string): boolean {
  return HEX_DIGEST_RE.test(v)
}

const PLACEHOLDER_WORDS = [
  'example',
  'xxxx',
  'your_',
  'your-',
  'yourkey',
  'your_api_key',
  'placeholder',
  'changeme',
  'change_me',
  'dummy',
  'sample',
  'redacted',
  'insert',
  'replace',
  'replaceme',
  '****',
  '....',
  '<',
  '>',
  '${',
  '{{',
  '}}',
  '%(',
  '#{',
  '0123456789',
  'abcdefgh',
]

/** Credentials vendors publish as samples in their documentation: public, nobody's secret. */
const DOCUMENTATION_SAMPLES: ReadonlySet<string> = new Set([
  // AWS documentation's example access key pair (also caught by "example").
  'AKIAIOSFODNN7EXAMPLE',
  'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  // Stripe API reference sample test-mode keys (current and earlier pages).
  'sk_test_BQokikJOvBiI2HlWgH4olfQ2',
  'sk_test_4eC39HqLyjWDarjtT1zdp7dc',
])

/** Filler runs, placeholders wherever they sit (`sk-proj-xxxxxxxxxxxx`). */
const FILLERS: ReadonlySet<string> = new Set(['xxxx', 'abcdefgh'])

/**
 * The placeholder words as one case-insensitive alternation of literals (no
 * quantifiers: linear). A word of letters (not a filler run) counts only as a whole part of the
 * value (no letter before or after it): "replace-me", "replaceme" and
 * "YOUR_KEY_SAMPLE" are placeholders, the passwords "fireplace-63!" and
 * "smoggy-replacement-35!" are not.
 */
const PLACEHOLDER_RE = new RegExp(
  PLACEHOLDER_WORDS.map((w) => (/^[a-z]+$/i.test(w) && !FILLERS.has(w) ? `(?<![A-Za-z])${w}(?![A-Za-z])` : w.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&'))).join('|'),
  'i',
)

/**
 * True for values that are templates or placeholders rather than secrets:
 * `${VAR}`, `{{ x }}`, `<token>`, "example", "xxxx", YOUR_API_KEY, a single
 * repeated character, and modelgate's own `[LABEL_n]` placeholders.
 */
export function looksLikePlaceholder(value: string): boolean {
  if (PLACEHOLDER_RE.test(value) || DOCUMENTATION_SAMPLES.has(value)) return true
  if (/^\[[A-Z][A-Z0-9_]*_\d+\]$/.test(value)) return true
  if (/^\$[A-Za-z_]/.test(value) || /^%[A-Za-z_]+%$/.test(value)) return true
  // At most two distinct characters, case and "-_." aside.
  let a = -1
  let b = -1
  for (let i = 0; i < value.length; i++) {
    let c = value.charCodeAt(i)
    if (c === 0x2d || c === 0x5f || c === 0x2e) continue
    if (c >= 65 && c <= 90) c += 32
    if (c === a || c === b) continue
    if (a < 0) a = c
    else if (b < 0) b = c
    else return false
  }
  return true
}

/** Values of `password = …` that are code, types or empty markers rather than a password. */
const NON_PASSWORD_VALUES = new Set([
  'true',
  'false',
  'null',
  'none',
  'nil',
  'undefined',
  'string',
  'str',
  'number',
  'int',
  'bool',
  'boolean',
  'any',
  'object',
  'required',
  'optional',
  'password',
  'passwd',
  'secret',
  'empty',
  'hidden',
  'masked',
  'unset',
  'env',
])
export function plausiblePassword(value: string): boolean {
  const v = value.replace(/[;,)]+$/, '')
  if (v.length < 4) return false
  if (NON_PASSWORD_VALUES.has(v.toLowerCase())) return false
  if (looksLikePlaceholder(v)) return false
  // Code, not a literal: member access, calls, environment lookups, type annotations.
  if (/^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\(|$)/.test(v)) return false
  if (/\(|\)|\[|\]/.test(v)) return false
  // File system paths (PWD=/home/app).
  if (/^[~.]?\//.test(v)) return false
  if (/^(?:process\.env|os\.environ|getenv|env\.|secrets\.|vault:|arn:)/i.test(v)) return false
  return true
}

/**
 * The password of a URL's userinfo. Reserved characters may appear in it
 * (`pa#ss`, `p@ss/w?rd`: the last `@` before the host ends it), so a port
 * followed by a path (`host:8080/@scope/pkg`) can look like one: not a password.
 */
export function plausibleUrlPassword(value: string): boolean {
  if (/^\d{1,5}(?:[/?#]|$)/.test(value)) return false
  return plausiblePassword(value)
}

/** A JWT header segment decodes to a JSON object naming an algorithm or type. */
export function validJwt(value: string): boolean {
  const dot = value.indexOf('.')
  if (dot < 0) return false
  try {
    const header = JSON.parse(Buffer.from(value.slice(0, dot), 'base64url').toString('utf8')) as unknown
    return typeof header === 'object' && header !== null && ('alg' in header || 'typ' in header)
  } catch {
    return false
  }
}

/** `Authorization: Basic …` decodes to printable `user:password`. */
export function validBasicAuth(value: string): boolean {
  const decoded = Buffer.from(value, 'base64').toString('latin1')
  const colon = decoded.indexOf(':')
  return colon > 0 && colon < decoded.length - 1 && /^[\x20-\x7e]+$/.test(decoded) && !looksLikePlaceholder(decoded.slice(colon + 1))
}

const MONTHS: Readonly<Record<string, number>> = {
  jan: 1,
  feb: 2,
  mar: 3,
  apr: 4,
  may: 5,
  jun: 6,
  jul: 7,
  aug: 8,
  sep: 9,
  oct: 10,
  nov: 11,
  dec: 12,
}

/** A calendar date in a plausible birth range (1900 .. this year), in the common written forms. */
export function validBirthDate(value: string, now = new Date()): boolean {
  const v = value.trim()
  let y: number
  let m: number
  let d: number
  let r: RegExpExecArray | null
  if ((r = /^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$/.exec(v))) {
    y = Number(r[1])
    m = Number(r[2])
    d = Number(r[3])
  } else if ((r = /^(\d{1,2})[-/.](\d{1,2})[-/.](\d{2}|\d{4})$/.exec(v))) {
    const a = Number(r[1])
    const b = Number(r[2])
    y = Number(r[3])
    if (y < 100) y += y > now.getFullYear() % 100 ? 1900 : 2000
    // Month-first (US) when it parses, else day-first.
    if (a <= 12) {
      m = a
      d = b
    } else {
      d = a
      m = b
    }
  } else if ((r = /^([A-Za-z]{3})[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})$/.exec(v))) {
    m = MONTHS[r[1]!.toLowerCase()] ?? 0
    d = Number(r[2])
    y = Number(r[3])
  } else if ((r = /^(\d{1,2})(?:st|nd|rd|th)?\s+([A-Za-z]{3})[a-z]*\.?,?\s+(\d{4})$/.exec(v))) {
    d = Number(r[1])
    m = MONTHS[r[2]!.toLowerCase()] ?? 0
    y = Number(r[3])
  } else {
    return false
  }
  if (y < 1900 || y > now.getFullYear() || m < 1 || m > 12 || d < 1) return false
  const daysIn = new Date(Date.UTC(y, m, 0)).getUTCDate()
  return d <= daysIn
}

/** Domains reserved for documentation and tests (RFC 2606, RFC 6761): addresses there belong to nobody. */
const RESERVED_EMAIL_DOMAIN = /(?:^|\.)(?:example\.(?:com|org|net)|example|test|invalid|localhost)$/i
/** "logo@2x.png" is a file name, not an address. */
const FILE_TLD = /\.(?:png|jpe?g|gif|svg|webp|ico|bmp|js|mjs|cjs|ts|css|scss|json|ya?ml|html?|md|txt|lock|map)$/i
export function validEmail(value: string, site?: { text: string; start: number }): boolean {
  // "postgres://user:pa/ss@host": the userinfo of a URL (the password may hold reserved characters), not an address.
  if (site && /:\/\/[^\s:/?#@'"<>]*(?::[^\s'"<>]*)?$/.test(site.text.slice(Math.max(0, site.start - 200), site.start))) return false
  const at = value.lastIndexOf('@')
  const domain = value.slice(at + 1)
  if (RESERVED_EMAIL_DOMAIN.test(domain) || FILE_TLD.test(domain)) return false
  const local = value.slice(0, at)
  if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return false
  // "<3f2b…-…@mail.example.net>" is a Message-ID or an object id, not a mailbox.
  if (isUuid(local) || /^[0-9a-f]{16,}$/i.test(local) || /^[0-9a-f]{8}-[0-9a-f]{4}-/i.test(local)) return false
  return true
}

/** E.164: 8–15 digits after the plus, not one digit repeated. */
export function validE164(value: string): boolean {
  const d = digitsOnly(value)
  return d.length >= 8 && d.length <= 15 && !allSame(d.slice(1))
}

/**
 * North American numbers: area and exchange codes start 2–9; the exchange is
 * not N11. A bare `ddd-ddd-dddd` needs a context word (phone, call, tel…);
 * the `(ddd) ddd-dddd` form stands on its own.
 */
export function validNanp(value: string, site: { hasContext(): boolean }): boolean {
  const d = digitsOnly(value)
  const n = d.length === 11 && d[0] === '1' ? d.slice(1) : d
  if (n.length !== 10) return false
  if (n[0] === '0' || n[0] === '1' || n[3] === '0' || n[3] === '1') return false
  if (n[4] === '1' && n[5] === '1') return false
  if (allSame(n)) return false
  if (!consistentSeparators(value.replace(/^\+?1[ .-]?/, '').replace(/[()]/g, '').replace(/ +/g, ' '))) {
    // "(415) 555-0100" mixes a space and a dash by convention; other mixtures are not phone numbers.
    if (!/^\(\d{3}\) ?\d{3}-\d{4}$/.test(value.replace(/^\+?1[ .-]?/, ''))) return false
  }
  return value.includes('(') || site.hasContext()
}

/** A national number with a trunk prefix (UK 07…, DE 030…): 9–12 digits, context required. */
export function validNationalPhone(value: string, site: { hasContext(): boolean }): boolean {
  const d = digitsOnly(value)
  return d.length >= 9 && d.length <= 12 && !allSame(d.slice(1)) && site.hasContext()
}

export function hasDigit(v: string): boolean {
  return /\d/.test(v)
}
