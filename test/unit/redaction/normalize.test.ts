import t, { type Test } from 'tap'
import fc from 'fast-check'
import { compileRedaction, redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { normalizeString, originalSpan, prepareText } from '../../../src/redaction/normalize.ts'

const scanner = compileRedaction(redactionConfigFrom({})).scanner

/** Values of several classes, each with the detector that must report it. */
const PLANTED: readonly { readonly value: string; readonly detector: string }[] = [
  { value: 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2', detector: 'github-pat' },
  { value: 'sk_live_a1B2c3D4a1B2c3D4a1B2c3D4a1B2c3D4', detector: 'stripe-secret-key' },
  { value: 'AKIAZ2X3C4V5B6N7M2Q2', detector: 'aws-access-key-id' },
  { value: 'jane.roe@gmail.com', detector: 'email' },
  { value: '4111 1111 1111 1111', detector: 'credit-card' },
  { value: '536-22-1234', detector: 'us-ssn' },
  { value: 'DE89 3704 0044 0532 0130 00', detector: 'iban' },
  { value: '+44 20 7946 0958', detector: 'phone-e164' },
]

/** Text around the values: words, accented and CJK letters, emoji; nothing a detector reports. */
const filler = fc
  .array(fc.constantFrom('lorem', 'ipsum', 'über', 'café', '数据', 'naïve', '😀', '👍🏽', ' ', ', ', '.', '\n', '—', 'e\u0301'), { maxLength: 12 })
  .map((xs) => xs.join(''))

/** Characters that break UTF-16 or hide from detectors: lone surrogates and format characters. */
const LONE = ['\ud800', '\udbff', '\udc00', '\udfff', '😀'.slice(0, 1), '😀'.slice(1)]
const FORMAT = ['\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u00ad', '\u202e', '\u2066']

/** Inserts `extra` characters at the given positions of `s` (positions taken modulo the length + 1). */
function sprinkle(s: string, at: readonly number[], extra: readonly string[]): string {
  let out = s
  const sorted = [...at].map((p) => p % (s.length + 1)).sort((a, b) => b - a)
  sorted.forEach((p, i) => (out = out.slice(0, p) + extra[i % extra.length] + out.slice(p)))
  return out
}

interface Plan {
  readonly text: string
  readonly spans: readonly { readonly start: number; readonly end: number; readonly detector: string }[]
}

/** Fillers and planted values, one space on each side of a value. */
function assemble(parts: readonly { filler: string; value: string; detector: string }[], tail: string): Plan {
  let text = ''
  const spans: { start: number; end: number; detector: string }[] = []
  for (const p of parts) {
    text += p.filler + ' '
    spans.push({ start: text.length, end: text.length + p.value.length, detector: p.detector })
    text += p.value + ' '
  }
  return { text: text + tail, spans }
}

function assertFound(t: Test, plan: Plan): void {
  const found = scanner.scan(plan.text)
  for (const s of plan.spans) {
    const hit = found.find((d) => d.detector === s.detector && d.start === s.start && d.end === s.end)
    if (!hit) t.fail(`${s.detector} at ${s.start}-${s.end} in ${JSON.stringify(plan.text)}; found ${JSON.stringify(found.map((d) => [d.detector, d.start, d.end]))}`)
  }
}

t.test('lone surrogates anywhere around planted values hide nothing and shift no offset', async (t) => {
  const part = fc.record({ filler: filler, planted: fc.constantFrom(...PLANTED), cuts: fc.array(fc.nat(), { maxLength: 6 }), lone: fc.array(fc.constantFrom(...LONE), { minLength: 1, maxLength: 6 }) })
  fc.assert(
    fc.property(fc.array(part, { minLength: 1, maxLength: 5 }), filler, (parts, tail) => {
      const plan = assemble(
        parts.map((p) => ({ filler: sprinkle(p.filler, p.cuts, p.lone), value: p.planted.value, detector: p.planted.detector })),
        tail,
      )
      assertFound(t, plan)
    }),
    { seed: 20240611, numRuns: 300 },
  )
})

t.test('format characters inside a value are removed for detection and covered by the reported span', async (t) => {
  const part = fc.record({ filler: filler, planted: fc.constantFrom(...PLANTED), cuts: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), marks: fc.array(fc.constantFrom(...FORMAT), { minLength: 1, maxLength: 4 }) })
  fc.assert(
    fc.property(fc.array(part, { minLength: 1, maxLength: 4 }), filler, (parts, tail) => {
      const plan = assemble(
        parts.map((p) => {
          // Inside the value only: between its first and last character.
          const inner = sprinkle(p.planted.value.slice(1, -1), p.cuts, p.marks)
          return { filler: p.filler, value: p.planted.value[0] + inner + p.planted.value.slice(-1), detector: p.planted.detector }
        }),
        tail,
      )
      assertFound(t, plan)
    }),
    { seed: 20240612, numRuns: 300 },
  )
})

t.test('full-width forms are folded for detection and the span covers the original characters', async (t) => {
  const wide = (ch: string) => (ch === ' ' ? '\u3000' : ch >= '!' && ch <= '~' ? String.fromCharCode(ch.charCodeAt(0) - 0x21 + 0xff01) : ch)
  fc.assert(
    fc.property(fc.constantFrom(...PLANTED), fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }), filler, (p, which, around) => {
      const value = [...p.value].map((ch, i) => (which[i % which.length] ? wide(ch) : ch)).join('')
      assertFound(t, assemble([{ filler: around, value, detector: p.detector }], around))
    }),
    { seed: 20240613, numRuns: 200 },
  )
})

t.test('ASCII text is used as it is: no copy of the string and no offset table', async (t) => {
  const text = 'plain ascii with a token ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
  const d = prepareText(text)
  t.equal(d.view, text)
  t.equal(d.origin, undefined)
  t.ok(d.ascii)
  t.same(originalSpan(d, 3, 9), [3, 9])
})

t.test('normalisation: lone surrogates become U+FFFD, format characters go, compatibility forms fold', async (t) => {
  t.equal(normalizeString('a\ud800b'), 'a\ufffdb')
  t.equal(normalizeString('x\udc00'), 'x\ufffd')
  t.equal(normalizeString('gh\u200bp_\u2060x\ufeff\u00ad'), 'ghp_x')
  t.equal(normalizeString('４１１１\u3000ｊａｎｅ＠ｘ．ｃｏｍ'), '4111 jane@x.com')
  t.equal(normalizeString('𝟒𝟏𝟏𝟏 ①'), '4111 1')
  t.equal(normalizeString('4111\u20131111\u00a01111\u22121111'), '4111-1111 1111-1111')
  t.equal(normalizeString('ﬁle \u2028'), 'file \n')
  t.equal(normalizeString('😀 数据 e\u0301'), '😀 数据 e\u0301', 'other text is left as it is')
})

t.test('a span maps back to the original from its first to its last character, removed characters inside included', async (t) => {
  const text = '\u200bab\u200bc\ud83d\ude00d'
  const d = prepareText(text)
  t.equal(d.bytes.toString('utf8'), 'abc😀d')
  // "abc" is bytes 0..3; the emoji is 4 bytes (3..7); "d" is byte 7.
  t.same(originalSpan(d, 0, 3), [1, 5])
  t.same(originalSpan(d, 3, 7), [5, 7])
  t.same(originalSpan(d, 0, 8), [1, 8])
})
