import t from 'tap'
import { formatPath, rewriteStrings, stringLeaves } from '../../../src/redaction/json.ts'

t.test('string leaves carry their JSON path, decoded value and raw span', async (t) => {
  const raw = '{"a": [1, "x\\ny", {"b\\u0041": "\\u00e9t\\u00e9"}], "n": 12345678901234567890, "k": true}'
  const leaves = stringLeaves(raw)
  t.same(leaves.map((l) => [l.path, l.value]), [
    [['a', 1], 'x\ny'],
    [['a', 2, 'bA'], 'été'],
  ])
  t.equal(raw.slice(leaves[0]!.start, leaves[0]!.end), '"x\\ny"')
})

t.test('rewriting replaces only changed strings and keeps the rest byte for byte', async (t) => {
  const raw = '{ "n": 12345678901234567890,\n  "s": "hi \\"you\\"" }'
  const [leaf] = stringLeaves(raw)
  const out = rewriteStrings(raw, [{ start: leaf!.start, end: leaf!.end, value: 'a "quoted"\nline' }])
  t.equal(out, '{ "n": 12345678901234567890,\n  "s": "a \\"quoted\\"\\nline" }')
  t.same(JSON.parse(out).s, 'a "quoted"\nline')
})

t.test('malformed JSON is reported, deep nesting is walked without recursion', async (t) => {
  t.throws(() => stringLeaves('{"a": '))
  t.throws(() => stringLeaves('{"a": 1} x'))
  const deep = '['.repeat(20000) + '"s"' + ']'.repeat(20000)
  t.equal(stringLeaves(deep)[0]!.value, 's')
})

t.test('paths print as a reader would write them', async (t) => {
  t.equal(formatPath(['messages', 0, 'content', 1, 'text']), 'messages[0].content[1].text')
  t.equal(formatPath(['metadata', 'x-y']), 'metadata["x-y"]')
  t.equal(formatPath([]), '$')
})
