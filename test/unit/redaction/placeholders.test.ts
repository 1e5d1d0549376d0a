import t from 'tap'
import fc from 'fast-check'
import RE2 from 're2'
import { findPlaceholders, PLACEHOLDER_PATTERN } from '../../../src/redaction/placeholders.ts'

/** What the pattern finds, left to right: the reference the reader is held to. */
function byPattern(text: string): { start: number; end: number; text: string }[] {
  const re = new RE2(PLACEHOLDER_PATTERN, 'gu')
  const out: { start: number; end: number; text: string }[] = []
  let m: RegExpExecArray | null
  while ((m = re.exec(text)) !== null) out.push({ start: m.index, end: m.index + m[0].length, text: m[0] })
  return out
}

t.test('placeholders are found where the pattern finds them', async (t) => {
  const cases: Record<string, string> = {
    'one placeholder': 'Contact [EMAIL_1] today',
    'several, side by side': '[EMAIL_1][PHONE_12] and [API_KEY_3]',
    'a label with underscores and digits': '[AWS_ACCESS_KEY_2_7]',
    'a bracket before a placeholder': '[[EMAIL_1]] and [ [CARD_2]',
    'a leading zero is no number': '[EMAIL_0] [EMAIL_01] [EMAIL_10]',
    'a lower-case label is no label': '[email_1] [Email_1] [E_1]',
    'no number': '[EMAIL] [EMAIL_] [_1]',
    'a seven-digit number is too long': '[EMAIL_1234567] [EMAIL_123456]',
    'a 33-character label is too long': `[${'A'.repeat(33)}_1] [${'A'.repeat(32)}_1]`,
    'unclosed at the end': 'text [EMAIL_1',
    'other characters inside': '[EMAIL-1] [EMAIL_1 ] [EMAIL_1x]',
    'unicode around': 'é[EMAIL_1]😀[PHONE_2]',
    'no bracket at all': 'plain text',
  }
  for (const [name, text] of Object.entries(cases)) t.same(findPlaceholders(text), byPattern(text), name)
})

t.test('for any text, placeholders are found where the pattern finds them (property)', async (t) => {
  const piece = fc.oneof(
    fc.constantFrom('[', ']', '_', '0', '1', '9', 'A', 'Z', 'a', ' ', 'é', '😀', '[EMAIL_1]', '[A_', '_12]', 'KEY'),
    fc.string({ maxLength: 4 }),
  )
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 40 }).map((a) => a.join('')), (text) => JSON.stringify(findPlaceholders(text)) === JSON.stringify(byPattern(text))),
    { numRuns: 5000 },
  )
  t.pass('5000 generated texts read the same')
})
