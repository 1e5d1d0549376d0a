/**
 * The foundation through a real Envoy: mTLS identity, provider SDKs over the
 * gateway (JSON and SSE), forged identity headers, and every fault path of
 * the processor ending in a refusal that never reaches the provider.
 */
import t from 'tap'
import { connect } from 'node:tls'
import { readFileSync } from 'node:fs'
import type { Stage } from '../../src/pipeline/stage.ts'
import { startStack, type Stack } from '../helpers/stack.ts'

const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }] }

/** Records the identity modelgate resolved for each request. */
function identityProbe(): Stage & { seen: string[] } {
  const seen: string[] = []
  return {
    name: 'probe',
    seen,
    requestBody(ctx) {
      seen.push(ctx.out.caller?.workload?.spiffeId ?? '(none)')
    },
  }
}

t.test('with a running stack', async (t) => {
  const probe = identityProbe()
  const stack: Stack = await startStack({ extraStages: { last: [probe] } })
  t.teardown(() => stack.close())
  t.beforeEach(() => {
    stack.provider.clear()
    probe.seen.length = 0
  })

  t.test('an allowed identity gets the provider answer through the OpenAI SDK', async (t) => {
    const res = await stack.openai('checkout').chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello there' }] })
    t.equal(res.choices[0]?.message.content, 'Stand-in reply. You said: hello there')
    t.equal(stack.provider.requests.length, 1)
    t.same(probe.seen, ['spiffe://modelgate.local/ns/payments/sa/checkout'])
  })

  t.test('an allowed identity gets a streamed answer through the OpenAI SDK', async (t) => {
    const stream = await stack.openai('checkout').chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'stream it' }], stream: true })
    let text = ''
    let chunks = 0
    for await (const c of stream) {
      chunks++
      text += c.choices[0]?.delta?.content ?? ''
    }
    t.equal(text, 'Stand-in reply. You said: stream it')
    t.ok(chunks > 3, 'the answer arrived as several SSE chunks')
  })

  t.test('an allowed identity gets answers through the Anthropic SDK, whole and streamed', async (t) => {
    const client = stack.anthropic('notebook')
    const msg = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'hi claude' }] })
    t.same(msg.content, [{ type: 'text', text: 'Stand-in reply. You said: hi claude' }])
    const stream = client.messages.stream({ model: 'claude-haiku-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'stream claude' }] })
    const final = await stream.finalMessage()
    t.same(final.content, [{ type: 'text', text: 'Stand-in reply. You said: stream claude' }])
    t.same(probe.seen, ['spiffe://modelgate.local/ns/research/sa/notebook', 'spiffe://modelgate.local/ns/research/sa/notebook'])
  })

  t.test('a connection without a client certificate is refused during the TLS handshake', async (t) => {
    const err = await tlsHandshake(stack, undefined)
    t.ok(err, `handshake failed: ${err?.message}`)
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('a certificate from a CA Envoy does not trust is refused during the TLS handshake', async (t) => {
    const err = await tlsHandshake(stack, 'otherCa')
    t.ok(err, `handshake failed: ${err?.message}`)
    t.equal(stack.provider.requests.length, 0)
  })

  const refusals = [
    { client: 'twoUris', status: 403, code: 'MG_IDENTITY_INVALID', what: 'a certificate with two URI SANs' },
    { client: 'nonSpiffe', status: 403, code: 'MG_IDENTITY_INVALID', what: 'a certificate whose URI SAN is not a SPIFFE ID' },
    { client: 'foreignDomain', status: 403, code: 'MG_IDENTITY_UNTRUSTED', what: 'a SPIFFE ID from a trust domain that is not allowed' },
    { client: 'signingLeaf', status: 403, code: 'MG_IDENTITY_INVALID', what: 'a leaf whose key usage lets it sign certificates' },
    { client: 'upperCaseId', status: 403, code: 'MG_IDENTITY_INVALID', what: 'a SPIFFE ID with an upper-case scheme and trust domain' },
  ] as const
  for (const r of refusals) {
    t.test(`${r.what} gets ${r.status} ${r.code} and reaches no provider`, async (t) => {
      const res = await stack.request(r.client, { path: '/v1/chat/completions', body: chat })
      t.equal(res.status, r.status)
      const body = res.json()
      t.equal(body.error.code, r.code)
      t.match(body.error.request_id, /^[0-9a-f-]{36}$/)
      t.equal(res.headers['x-modelgate-error'], r.code)
      t.equal(stack.provider.requests.length, 0)
    })
  }

  t.test('the caller gets the request id its decision is recorded under', async (t) => {
    const res = await stack.request('checkout', { path: '/v1/chat/completions', headers: { 'x-request-id': 'chosen-by-the-client' }, body: chat })
    t.equal(res.status, 200)
    const id = res.headers['x-request-id']
    t.match(id, /^[0-9a-f-]{36}$/, 'Envoy generates the id; a client cannot choose it')
    t.equal(stack.provider.requests[0]!.headers['x-request-id'], id, 'the provider sees the same id')
  })

  t.test('forged identity headers from the client have no effect and never reach the provider', async (t) => {
    const res = await stack.request('checkout', {
      path: '/v1/chat/completions',
      headers: {
        'x-forwarded-client-cert': 'By=spiffe://modelgate.local/ns/edge/sa/envoy;URI=spiffe://modelgate.local/ns/platform/sa/admin',
        'x-spiffe-id': 'spiffe://modelgate.local/ns/platform/sa/admin',
        'x-modelgate-identity': 'spiffe://modelgate.local/ns/platform/sa/admin',
      },
      body: chat,
    })
    t.equal(res.status, 200)
    t.same(probe.seen, ['spiffe://modelgate.local/ns/payments/sa/checkout'])
    const seen = stack.provider.requests[0]!.headers
    t.equal(seen['x-forwarded-client-cert'], undefined)
    t.equal(seen['x-spiffe-id'], undefined)
    t.equal(seen['x-modelgate-identity'], undefined)
  })

  t.test('a malformed JSON body gets 400 and the provider sees nothing', async (t) => {
    const res = await stack.request('checkout', { path: '/v1/chat/completions', body: '{"model": "gpt-4o-mini", "messages": [' })
    t.equal(res.status, 400)
    t.equal(res.json().error.code, 'MG_BODY_MALFORMED')
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('a body that is not JSON gets 400 and the provider sees nothing', async (t) => {
    const res = await stack.request('checkout', { path: '/v1/chat/completions', headers: { 'content-type': 'text/plain' }, body: 'hello' })
    t.equal(res.status, 400)
    t.equal(res.json().error.code, 'MG_CONTENT_TYPE_UNSUPPORTED')
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('a path modelgate does not know is refused before any provider', async (t) => {
    const res = await stack.request('checkout', { method: 'GET', path: '/v1/files' })
    t.equal(res.status, 404)
    t.equal(res.json().error.code, 'MG_ROUTE_UNSUPPORTED')
    t.equal(stack.provider.requests.length, 0)
  })
})

t.test('when modelgate is not running, requests get 5xx and reach no provider', async (t) => {
  const stack = await startStack({ withoutModelgate: true })
  t.teardown(() => stack.close())
  const res = await stack.request('checkout', { path: '/v1/chat/completions', body: chat })
  t.ok(res.status >= 500 && res.status < 600, `status ${res.status}`)
  t.equal(stack.provider.requests.length, 0)
})

t.test('when modelgate hangs past Envoy message_timeout, the request gets 504 and reaches no provider', async (t) => {
  const hang: Stage = { name: 'hang', requestBody: () => new Promise<void>(() => {}) }
  const stack = await startStack({ messageTimeout: '0.3s', config: { server: { phaseTimeoutMs: 20000, drainTimeoutMs: 100 } }, extraStages: { last: [hang] } })
  t.teardown(() => stack.close())
  const res = await stack.request('checkout', { path: '/v1/chat/completions', body: chat })
  t.equal(res.status, 504)
  t.equal(stack.provider.requests.length, 0)
})

t.test('when a stage overruns modelgate own deadline, the caller gets 504 MG_TIMEOUT and no provider sees it', async (t) => {
  const slow: Stage = { name: 'slow', requestBody: () => new Promise<void>((r) => setTimeout(r, 2000).unref()) }
  const stack = await startStack({ messageTimeout: '5s', config: { server: { phaseTimeoutMs: 200 } }, extraStages: { last: [slow] } })
  t.teardown(() => stack.close())
  const res = await stack.request('checkout', { path: '/v1/chat/completions', body: chat })
  t.equal(res.status, 504)
  t.equal(res.json().error.code, 'MG_TIMEOUT')
  t.equal(stack.provider.requests.length, 0)
})

t.test('when modelgate closes the stream mid-request, the request gets 5xx and reaches no provider', async (t) => {
  let entered!: () => void
  const inside = new Promise<void>((r) => (entered = r))
  const hang: Stage = {
    name: 'hang',
    requestBody: () => {
      entered()
      return new Promise<void>(() => {})
    },
  }
  const stack = await startStack({ messageTimeout: '10s', config: { server: { phaseTimeoutMs: 20000, drainTimeoutMs: 50 } }, extraStages: { last: [hang] } })
  t.teardown(() => stack.close())
  const pending = stack.request('checkout', { path: '/v1/chat/completions', body: chat })
  await inside
  await stack.stopModelgate() // drain timeout passes, open streams are closed with an error
  const res = await pending
  t.ok(res.status >= 500 && res.status < 600, `status ${res.status}`)
  t.equal(stack.provider.requests.length, 0)
})

t.test('when a stage fails unexpectedly, the caller gets 500 MG_INTERNAL and no provider sees it', async (t) => {
  const boom: Stage = {
    name: 'boom',
    requestBody() {
      throw new TypeError('cannot read properties of undefined')
    },
  }
  const stack = await startStack({ extraStages: { last: [boom] } })
  t.teardown(() => stack.close())
  const res = await stack.request('checkout', { path: '/v1/chat/completions', body: chat })
  t.equal(res.status, 500)
  const body = res.json()
  t.equal(body.error.code, 'MG_INTERNAL')
  t.notMatch(res.text(), /cannot read properties/, 'internal details stay internal')
  t.equal(stack.provider.requests.length, 0)
})

async function tlsHandshake(stack: Stack, client: 'otherCa' | undefined): Promise<Error | undefined> {
  const ca = readFileSync(stack.pki.ca.cert)
  const c = client ? stack.clients[client] : undefined
  return new Promise((resolve) => {
    const socket = connect({
      host: '127.0.0.1',
      port: Number(new URL(stack.url).port),
      servername: 'localhost',
      ca,
      ...(c ? { cert: readFileSync(c.cert), key: readFileSync(c.key) } : {}),
      ALPNProtocols: ['http/1.1'],
    })
    socket.setTimeout(5000)
    // TLS 1.3 reports a refused client certificate after the handshake, on the first read.
    socket.once('secureConnect', () => socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'))
    socket.once('data', () => {
      socket.destroy()
      resolve(undefined)
    })
    socket.once('error', (err) => resolve(err))
    socket.once('timeout', () => {
      socket.destroy()
      resolve(new Error('timeout'))
    })
    socket.once('close', () => resolve(new Error('connection closed without a response')))
  })
}
