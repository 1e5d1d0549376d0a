/**
 * Content-encoding both ways through a real Envoy: requests and responses
 * accept the same codings (one parser, one decoder) — stacked codings undone
 * in order, deflate zlib-wrapped or raw — the provider gets exactly the
 * decoded request that was inspected, the caller gets the decoded answer, and
 * a coding modelgate cannot read is refused in either direction.
 */
import t from 'tap'
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib'
import { startStack, type Stack } from '../helpers/stack.ts'

const encoders: Record<string, (b: Buffer) => Buffer> = {
  gzip: gzipSync,
  'x-gzip': gzipSync,
  deflate: deflateSync,
  br: brotliCompressSync,
}

/** Applies the codings of a header in order, as a sender would. */
function encode(header: string, body: Buffer, rawDeflate = false): Buffer {
  let out = body
  for (const c of header.split(',').map((x) => x.trim())) out = c === 'deflate' && rawDeflate ? deflateRawSync(out) : encoders[c]!(out)
  return out
}

t.test('content-encoding both ways through Envoy', async (t) => {
  const stack: Stack = await startStack()
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  const cases: { header: string; raw?: boolean }[] = [
    { header: 'gzip' },
    { header: 'gzip, gzip' },
    { header: 'x-gzip' },
    { header: 'deflate' },
    { header: 'deflate', raw: true },
    { header: 'br' },
    { header: 'deflate, br', raw: true },
  ]
  for (const c of cases) {
    const name = `${c.header}${c.raw ? ' (raw deflate)' : ''}`
    t.test(`${name}: the request reaches the provider decoded, the answer reaches the caller decoded`, async (t) => {
      const request = Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `hello in ${name}` }] }))
      const answer = { id: 'c1', object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: `answer in ${name}` }, finish_reason: 'stop' }] }
      stack.provider.enqueue({ headers: { 'content-type': 'application/json', 'content-encoding': c.header }, body: encode(c.header, Buffer.from(JSON.stringify(answer)), c.raw) })
      const res = await stack.request('checkout', { path: '/v1/chat/completions', headers: { 'content-type': 'application/json', 'content-encoding': c.header }, body: encode(c.header, request, c.raw) })
      t.equal(res.status, 200, res.text())
      const seen = stack.provider.requests[0]!
      t.same(seen.body, request, 'the provider got the decoded body')
      t.equal(seen.headers['content-encoding'], undefined, 'and no content-encoding')
      t.equal(seen.headers['content-length'], String(request.length))
      t.equal(res.headers['content-encoding'], undefined, 'the caller gets an identity-encoded answer')
      t.equal(res.json().choices[0].message.content, `answer in ${name}`)
    })
  }

  t.test('a coding modelgate cannot read is refused in a request, naming the ones it can', async (t) => {
    const res = await stack.request('checkout', { path: '/v1/chat/completions', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip, zstd' }, body: Buffer.from('(zstd bytes)') })
    t.equal(res.status, 400)
    t.match(res.json(), { error: { code: 'MG_CONTENT_ENCODING_UNSUPPORTED', content_encoding: 'gzip, zstd', supported: ['gzip', 'x-gzip', 'deflate', 'br', 'identity'] } })
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('and withheld in a response', async (t) => {
    stack.provider.enqueue({ headers: { 'content-type': 'application/json', 'content-encoding': 'gzip, zstd' }, body: Buffer.from('(zstd bytes)') })
    const res = await stack.request('checkout', { path: '/v1/chat/completions', body: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] } })
    t.equal(res.status, 502)
    t.equal(res.json().error.code, 'MG_RESPONSE_UNREADABLE')
  })
})
