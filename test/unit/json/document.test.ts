import t from 'tap'
import fc from 'fast-check'
import { GateError } from '../../../src/errors.ts'
import { containerPath, DEFAULT_JSON_LIMITS, firstInvalidUtf8, formatPath, JsonDocumentError, leafPath, parseJsonDocument, textPosition, type ParseOptions } from '../../../src/json/document.ts'

/** The refusal a parse raises: code and the caller-visible details. */
function refusal(input: string | Uint8Array, opts: ParseOptions = {}): { code: string; details: Record<string, unknown>; offset: number } | undefined {
  try {
    parseJsonDocument(input, opts)
    return undefined
  } catch (err) {
    if (!(err instanceof JsonDocumentError)) throw err
    return { code: err.code, details: { ...err.details }, offset: err.offset }
  }
}

const leafRows = (raw: string) =>
  parseJsonDocument(raw).leaves.map((l) => [l.kind, raw.slice(l.start, l.end), l.value, formatPath(leafPath(l))])

t.test('the value is what JSON.parse builds', async (t) => {
  const docs = [
    '{}',
    '[]',
    '0',
    '-0',
    '"x"',
    'true',
    'null',
    ' {"a" : [ true , false , null, -1.5e-3, 12345678901234567890 ] ,"b":{"c":{}}}\n',
    '"\\u00e9t\\u00e9 \\ud83d\\ude00 \\n\\"\\\\\\/\\b\\f\\r\\t"',
    '1e400',
    '{"constructor":{"prototype":1},"toString":"x","hasOwnProperty":2}',
  ]
  for (const raw of docs) t.same(parseJsonDocument(raw).value, JSON.parse(raw), raw)
  t.ok(Object.is(parseJsonDocument('-0').value, -0), '-0 stays negative zero')

  t.test('for any JSON text (property)', async (t) => {
    fc.assert(
      fc.property(fc.json({ depthSize: 'medium' }), (raw) => {
        const doc = parseJsonDocument(raw, { maxDepth: Infinity, maxValues: Infinity, duplicateKeys: 'last' })
        return JSON.stringify(doc.value) === JSON.stringify(JSON.parse(raw))
      }),
      { numRuns: 2000 },
    )
    t.pass('2000 generated documents parse to the same value')
  })

  t.test('and any text JSON.parse refuses is refused (property)', async (t) => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (raw) => {
        let native = true
        try {
          JSON.parse(raw)
        } catch {
          native = false
        }
        const ours = refusal(raw, { maxDepth: Infinity, maxValues: Infinity, duplicateKeys: 'last' }) === undefined
        return native === ours
      }),
      { numRuns: 3000 },
    )
    t.pass('3000 generated strings get the same accept or refuse')
  })
})

t.test('an own "__proto__" key becomes an own property, never the prototype', async (t) => {
  const raw = '{"__proto__":{"polluted":"yes"},"a":{"__proto__":[1]}}'
  const v = parseJsonDocument(raw).value as Record<string, unknown>
  t.equal(Object.getPrototypeOf(v), Object.prototype)
  t.ok(Object.hasOwn(v, '__proto__'))
  t.same(Object.getOwnPropertyDescriptor(v, '__proto__')?.value, { polluted: 'yes' })
  t.equal((v as { polluted?: unknown }).polluted, undefined)
  t.equal(({} as { polluted?: unknown }).polluted, undefined, 'no prototype was touched')
  t.same(Object.keys(v), ['__proto__', 'a'])
  t.same(JSON.stringify(v), JSON.stringify(JSON.parse(raw)))
  t.same(refusal('{"__proto__":1,"__proto__":2}'), { code: 'MG_BODY_DUPLICATE_KEY', details: { field: '__proto__', line: 1, column: 16 }, offset: 15 })
})

t.test('leaves: string values, keys and number literals, with exact spans, decoded values and lazy paths', async (t) => {
  const raw = '{"a": [1, "x\\ny", {"b\\u0041": "\\u00e9t\\u00e9"}], "n": 12345678901234567890, "k": true, "z": null}'
  t.same(leafRows(raw), [
    ['key', '"a"', 'a', 'a'],
    ['number', '1', '1', 'a[0]'],
    ['string', '"x\\ny"', 'x\ny', 'a[1]'],
    ['key', '"b\\u0041"', 'bA', 'a[2].bA'],
    ['string', '"\\u00e9t\\u00e9"', 'été', 'a[2].bA'],
    ['key', '"n"', 'n', 'n'],
    ['number', '12345678901234567890', '12345678901234567890', 'n'],
    ['key', '"k"', 'k', 'k'],
    ['key', '"z"', 'z', 'z'],
  ])
  const doc = parseJsonDocument(raw)
  const key = doc.leaves[3]!
  t.equal(key.parent?.kind, 'object')
  t.same(containerPath(key.parent), ['a', 2])
  t.equal(key.key, 'bA', 'a key leaf names itself')
  t.same(leafRows('"root"'), [['string', '"root"', 'root', '$']])
  t.same(leafRows('-1.25E+3'), [['number', '-1.25E+3', '-1.25E+3', '$']])
})

t.test('spans stay exact around lone surrogates, escaped or not, and characters outside the BMP', async (t) => {
  const raw = '{"😀":"\\ud800x","k\\udc00":"\ud83d\ude00 \\ud83d\\ude00","s":"ok"}'
  const doc = parseJsonDocument(raw)
  for (const l of doc.leaves) {
    const token = raw.slice(l.start, l.end)
    t.equal(JSON.parse(token), l.value, `span ${l.start}-${l.end} holds ${JSON.stringify(token)}`)
  }
  t.same(
    doc.leaves.map((l) => l.value),
    ['😀', '\ud800x', 'k\udc00', '😀 😀', 's', 'ok'],
  )
  const lone = parseJsonDocument('"a\ud800b"')
  t.equal(lone.leaves[0]!.value, 'a\ud800b', 'a raw lone surrogate in a string is kept as JSON.parse keeps it')
  t.equal(lone.leaves[0]!.end, 5)
})

t.test('bytes are decoded as strict UTF-8', async (t) => {
  const ok = parseJsonDocument(Buffer.from('{"g":"Grüße 😀"}'))
  t.equal((ok.value as { g: string }).g, 'Grüße 😀')
  const cases: [name: string, bytes: number[], line: number, column: number][] = [
    ['a lone continuation byte', [0x22, 0x80, 0x22], 1, 2],
    ['an overlong encoding of "/"', [0x22, 0xc0, 0xaf, 0x22], 1, 2],
    ['an encoded surrogate', [0x22, 0x61, 0xed, 0xa0, 0x80, 0x22], 1, 3],
    ['a sequence cut short at the end', [0x0a, 0x22, 0xe2, 0x82], 2, 2],
    ['a code point above U+10FFFF', [0x22, 0xf4, 0x90, 0x80, 0x80, 0x22], 1, 2],
  ]
  for (const [name, bytes, line, column] of cases) {
    t.same(refusal(Uint8Array.from(bytes))?.details, { problem: 'the body is not valid UTF-8', line, column }, name)
  }
  t.equal(firstInvalidUtf8(Buffer.from('ok é 😀')), Buffer.byteLength('ok é 😀'), 'valid text has no invalid byte')
  t.equal(refusal(Buffer.from('\ufeff{}'))?.details.problem, 'a byte order mark is not allowed before JSON', 'a BOM is not stripped silently')
})

t.test('malformed JSON is refused with the problem, line and column', async (t) => {
  const cases: [raw: string, problem: string, line: number, column: number][] = [
    ['', 'unexpected end of input (expected a value)', 1, 1],
    ['   \n  ', 'unexpected end of input (expected a value)', 2, 3],
    ['{"a": ', 'unexpected end of input (expected a value)', 1, 7],
    ['{"a": 1} x', 'unexpected data after the JSON value', 1, 10],
    ['{"a" 1}', "unexpected character '1' (expected ':' after a key)", 1, 6],
    ['{"a":1 "b":2}', "unexpected character '\"' (expected ',' or '}' after an object member)", 1, 8],
    ['[1 2]', "unexpected character '2' (expected ',' or ']' after an array element)", 1, 4],
    ['[1,]', "unexpected character ']' (expected a value)", 1, 4],
    ['{"a":1,}', "unexpected character '}' (expected a string key)", 1, 8],
    ['{a:1}', "unexpected character 'a' (expected a string key)", 1, 2],
    ["{'a':1}", "unexpected character ''' (expected a string key)", 1, 2],
    ['[tru]', "unexpected character 't' (expected a value)", 1, 2],
    ['[NaN]', "unexpected character 'N' (expected a value)", 1, 2],
    ['01', 'unexpected data after the JSON value', 1, 2],
    ['[-]', 'invalid number: a digit must follow the minus sign', 1, 3],
    ['[1.]', 'invalid number: a digit must follow the decimal point', 1, 4],
    ['[.5]', "unexpected character '.' (expected a value)", 1, 2],
    ['[1e+]', 'invalid number: the exponent has no digits', 1, 5],
    ['[+1]', "unexpected character '+' (expected a value)", 1, 2],
    ['"abc', 'unterminated string', 1, 1],
    ['{\n  "a": "x\\qy"}', 'invalid escape in a string', 2, 10],
    ['["\\u12G4"]', 'invalid \\u escape (four hexadecimal digits must follow)', 1, 3],
    ['["a\tb"]', 'control character in a string (it must be escaped)', 1, 4],
    ['["a\nb"]', 'control character in a string (it must be escaped)', 1, 4],
    ['["😀", x]', "unexpected character 'x' (expected a value)", 1, 7],
    ['[\u00a0]', 'unexpected character U+00A0 (expected a value)', 1, 2],
  ]
  for (const [raw, problem, line, column] of cases) {
    const r = refusal(raw)
    t.same(r && { code: r.code, details: r.details }, { code: 'MG_BODY_MALFORMED', details: { problem, line, column } }, JSON.stringify(raw))
  }
  const err = (() => {
    try {
      parseJsonDocument('[1,]')
    } catch (e) {
      return e
    }
  })()
  t.ok(err instanceof GateError, 'a refusal is a GateError')
  t.equal((err as GateError).status, 400)
  t.equal((err as GateError).internal, "unexpected character ']' (expected a value) at line 1, column 4")
})

t.test('nesting: exactly the limit is accepted, one more is refused where it opens', async (t) => {
  const nested = (n: number) => '['.repeat(n) + ']'.repeat(n)
  t.ok(parseJsonDocument(nested(128)), '128 levels (the default) are accepted')
  t.same(refusal(nested(129)), { code: 'MG_BODY_TOO_DEEP', details: { limit: 128, line: 1, column: 129 }, offset: 128 })
  t.ok(parseJsonDocument('{"a":{"b":[1]}}', { maxDepth: 3 }))
  t.same(refusal('{"a":{"b":[{}]}}', { maxDepth: 3 }), { code: 'MG_BODY_TOO_DEEP', details: { limit: 3, line: 1, column: 12 }, offset: 11 })
  t.same(refusal('{\n "a": {\n  "b": [1]}}', { maxDepth: 2 })?.details, { limit: 2, line: 3, column: 8 })
})

t.test('values and keys: exactly the limit is accepted, one more is refused where it starts', async (t) => {
  // {"a":[1,2]} holds 5 values and keys: the object, the key, the array, two numbers.
  t.ok(parseJsonDocument('{"a":[1,2]}', { maxValues: 5 }))
  t.same(refusal('{"a":[1,2,3]}', { maxValues: 5 }), { code: 'MG_BODY_TOO_COMPLEX', details: { limit: 5, line: 1, column: 11 }, offset: 10 })
  t.same(refusal('{"a":1,"b":2}', { maxValues: 3 })?.details, { limit: 3, line: 1, column: 8 }, 'keys count')
  t.same(refusal('[true,false,null]', { maxValues: 3 })?.details, { limit: 3, line: 1, column: 13 }, 'literals count')
  t.equal(DEFAULT_JSON_LIMITS.maxValues, 100_000)
  const messages = Array.from({ length: 100_001 }, () => ({ role: 'user', content: 'x' }))
  t.equal(refusal(JSON.stringify({ model: 'm', messages }))?.code, 'MG_BODY_TOO_COMPLEX', '100001 messages are refused by the default limit')
})

t.test('duplicate keys are refused at any depth, naming the path, line and column', async (t) => {
  const cases: [raw: string, field: string, line: number, column: number][] = [
    ['{"model":"gpt-4o","messages":[],"model":"gpt-4o-mini"}', 'model', 1, 33],
    ['{"tools":[],\n"tools":[{"type":"function"}]}', 'tools', 2, 1],
    ['{"tools":[{"function":{"name":"a","name":"b"}}]}', 'tools[0].function.name', 1, 35],
    ['[[{"x":{"y":1,"y":1}}]]', '[0][0].x.y', 1, 15],
    ['{"a":1,"\\u0061":2}', 'a', 1, 8],
    ['{"x-y":{},"x-y":{}}', '["x-y"]', 1, 11],
  ]
  for (const [raw, field, line, column] of cases) {
    const r = refusal(raw)
    t.same(r && { code: r.code, details: r.details }, { code: 'MG_BODY_DUPLICATE_KEY', details: { field, line, column } }, raw)
  }
  t.ok(parseJsonDocument('{"a":{"k":1},"b":{"k":1}}'), 'the same key in different objects is fine')
  const last = parseJsonDocument('{"model":"a","x":1,"model":"b"}', { duplicateKeys: 'last' })
  t.same(last.value, JSON.parse('{"model":"a","x":1,"model":"b"}'), 'when allowed, the last occurrence wins, as in JSON.parse')
  t.same(Object.keys(last.value as object), ['model', 'x'])
  t.equal(last.leaves.filter((l) => l.kind === 'key' && l.value === 'model').length, 2, 'every occurrence is a leaf')
  t.equal(last.leaves.filter((l) => l.kind === 'string').length, 2)
})

t.test('linear work: deep bodies stop at the limit, wide bodies are read in one pass', async (t) => {
  const deep = '['.repeat(30_000)
  const r = refusal(deep)
  t.equal(r?.code, 'MG_BODY_TOO_DEEP')
  t.equal(r?.offset, 128, 'the parser stopped where the limit was crossed')
  const unlimited = parseJsonDocument('['.repeat(30_000) + '"s"' + ']'.repeat(30_000), { maxDepth: Infinity })
  const leaf = unlimited.leaves[0]!
  t.equal(leaf.value, 's', '30000 levels are walked without recursion when allowed')
  t.equal(leafPath(leaf).length, 30_000)

  const tiny = '[' + Array.from({ length: 200_000 }, () => '"ab"').join(',') + ']'
  const tooMany = refusal(tiny)
  t.equal(tooMany?.code, 'MG_BODY_TOO_COMPLEX')
  t.equal(tooMany?.offset, 1 + 99_999 * 5, '200k tiny strings: the parser stopped at the 100001st value')

  const wide = JSON.stringify({ model: 'text-embedding-3-small', input: Array.from({ length: 40_000 }, (_, i) => `document number ${i} of the batch`) })
  t.ok(wide.length >= 1 << 20, `a ${wide.length}-byte body`)
  const doc = parseJsonDocument(Buffer.from(wide))
  t.equal(doc.leaves.length, 2 + 1 + 40_000)
  t.same(doc.value, JSON.parse(wide))
  const last = doc.leaves[doc.leaves.length - 1]!
  t.equal(wide.slice(last.start, last.end), '"document number 39999 of the batch"')
  t.same(leafPath(last), ['input', 39_999])
})

t.test('positions count lines and characters', async (t) => {
  t.same(textPosition('ab\ncd', 4), { line: 2, column: 2 })
  t.same(textPosition('😀x', 2), { line: 1, column: 2 }, 'a surrogate pair is one character')
  t.same(textPosition('', 0), { line: 1, column: 1 })
})

t.test('paths print as a reader would write them', async (t) => {
  t.equal(formatPath(['messages', 0, 'content', 1, 'text']), 'messages[0].content[1].text')
  t.equal(formatPath(['metadata', 'x-y']), 'metadata["x-y"]')
  t.equal(formatPath([]), '$')
  t.equal(formatPath([3, 'a']), '[3].a')
  t.equal(formatPath(['metadata', 'secret', 'x'], (k) => k === 'secret'), 'metadata[*].x', 'hidden keys are written [*]')
})
