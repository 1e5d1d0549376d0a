import t from 'tap'
import { base64Runs, decodeRun, trailingBase64Run } from '../../../src/redaction/base64.ts'

const runs = (s: string, min = 16) => {
  const r = base64Runs(Buffer.from(s, 'latin1'), min)
  const out: string[] = []
  for (let k = 0; k < r.length; k += 2) out.push(s.slice(r[k], r[k + 1]))
  return out
}
const b64 = (s: string) => Buffer.from(s).toString('base64')

t.test('a run is base64 or base64url characters with up to two "=" of padding, at least the minimum long', async (t) => {
  t.same(runs(`x ${b64('hello there, general')} y`), [b64('hello there, general')])
  t.same(runs('short QUJD and a-long_run-of-url_safe-chars!'), ['a-long_run-of-url_safe-chars'])
  t.same(runs('QUJDREVGR0hJSktMTU5P==='), ['QUJDREVGR0hJSktMTU5P=='], 'a third "=" is not padding')
  t.same(runs('QUJDREVGR0hJSktMTU5P=QUJDREVGR0hJSktMTU5P'), ['QUJDREVGR0hJSktMTU5P=', 'QUJDREVGR0hJSktMTU5P'], 'a run after padding is found too')
  t.same(runs('QUJDREVGR0hJSk=', 15), [], 'padding does not count towards the minimum')
})

t.test('lines of a wrapped block are one run; a line that goes on with something else is not part of it', async (t) => {
  const block = 'QUJDREVGR0hJSktMTU5PUFFS\nU1RVVldYWVphYmNkZWZnaGlq\r\na2xtbm9w'
  t.same(runs(`begin\n${block}\nend`), [block])
  t.same(runs('KEY=YXBpX2tleTogc2tfdGVzdF9Hcnh0\nOTHER_KEY=value'), ['YXBpX2tleTogc2tfdGVzdF9Hcnh0'])
  t.same(runs('QUJD\nREVGR0hJSktMTU5PUFFSU1RV', 4), ['QUJD', 'REVGR0hJSktMTU5PUFFSU1RV'], 'a first line shorter than 16 does not wrap')
})

t.test('decoding keeps only what reads as text, and finds the encoded part after a glued name', async (t) => {
  const text = 'the deploy key is in the vault'
  const plain = b64(text)
  t.same(decodeRun(plain, 0, plain.length), { at: 0, text })
  const glued = `payload_${plain}`
  t.same(decodeRun(glued, 0, glued.length), { at: 8, text })
  const url = Buffer.from('~~~~ ???? >>>> text').toString('base64url')
  t.equal(decodeRun(url, 0, url.length)?.text, '~~~~ ???? >>>> text')
  const binary = Buffer.from(Array.from({ length: 48 }, (_, i) => (i * 37) % 256)).toString('base64')
  t.equal(decodeRun(binary, 0, binary.length), undefined, 'bytes that are not text are not scanned')
  t.equal(decodeRun('internationalization', 0, 20), undefined, 'a long word is not base64 text')
})

t.test('trailingBase64Run: where a run that may still grow began', async (t) => {
  const s = `done. ${b64('x'.repeat(60))}`
  t.equal(trailingBase64Run(Buffer.from(s, 'latin1')), 6)
  t.equal(trailingBase64Run(Buffer.from('done. ', 'latin1')), -1)
})
