import t from 'tap'
import fc from 'fast-check'
import { KeywordAutomaton, type Hits } from '../../../src/redaction/prefilter.ts'

const KEYWORDS = [
  { text: 'key', caseSensitive: false, boundary: 'none' as const },
  { text: 'apikey', caseSensitive: false, boundary: 'none' as const },
  { text: 'ghp_', caseSensitive: true, boundary: 'token' as const },
  { text: 'SK', caseSensitive: true, boundary: 'token' as const },
  { text: 'pass', caseSensitive: false, boundary: 'part' as const },
  { text: 'tel', caseSensitive: false, boundary: 'word' as const },
  { text: '://', caseSensitive: false, boundary: 'none' as const },
  { text: 'ä@', caseSensitive: true, boundary: 'none' as const },
]

/** Every occurrence by plain search, with the same conditions. */
function naive(text: string): string[] {
  const bytes = Buffer.from(text, 'utf8')
  const out: string[] = []
  KEYWORDS.forEach((k, i) => {
    const kw = Buffer.from(k.text, 'utf8')
    for (let p = 0; p + kw.length <= bytes.length; p++) {
      const window = bytes.subarray(p, p + kw.length)
      const same = k.caseSensitive ? window.equals(kw) : window.toString('latin1').toLowerCase() === kw.toString('latin1').toLowerCase()
      if (!same) continue
      const prev = p > 0 ? String.fromCharCode(bytes[p - 1]!) : ''
      if (k.boundary === 'word' && /[A-Za-z0-9_]/.test(prev)) continue
      if (k.boundary === 'token' && /[A-Za-z0-9_-]/.test(prev)) continue
      if (k.boundary === 'part' && /[A-Za-z0-9]/.test(prev)) continue
      out.push(`${i}@${p}`)
    }
  })
  return out.sort()
}

const automaton = new KeywordAutomaton(KEYWORDS.map((k, i) => ({ ...k, targets: [i] })))
function found(text: string): string[] {
  const hits: Hits[] = new Array<Hits>(KEYWORDS.length)
  automaton.scan(Buffer.from(text, 'utf8'), hits, 1 << 30)
  const out: string[] = []
  hits.forEach((h, i) => {
    if (h && h !== 'full') for (let k = 0; k < h.length; k += 2) out.push(`${i}@${h[k]}`)
  })
  return out.sort()
}

t.test('the keyword automaton reports exactly the occurrences a plain search finds, overlaps and case included', async (t) => {
  const piece = fc.constantFrom('key', 'KEY', 'apikey', 'ApiKey', 'ghp_', 'GHP_', 'SK', 'sk', 'TASK', 'pass', 'bypass', 'DB_PASS', 'tel', 'hotel', '://', 'ä@', 'Ä@', 'x', '-', '_', ' ', 'é')
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 25 }), (parts) => {
      const text = parts.join('')
      t.same(found(text), naive(text), JSON.stringify(text))
    }),
    { seed: 20240615, numRuns: 500 },
  )
})

t.test('more hits than the limit for one target turn into a whole-text scan', async (t) => {
  const hits: Hits[] = new Array<Hits>(KEYWORDS.length)
  automaton.scan(Buffer.from('key '.repeat(50)), hits, 10)
  t.equal(hits[0], 'full')
})
