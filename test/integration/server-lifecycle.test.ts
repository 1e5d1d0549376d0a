/**
 * The server's life cycle on a Unix socket: grpc.health.v1, graceful shutdown
 * that drains open streams, the drain timeout, and refusing work while draining.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { startApp, type App } from '../../src/app.ts'
import { configFromObject } from '../../src/config/config.ts'
import { createCa, issueCertificate } from '../../src/dev/pki.ts'
import { silentLogger } from '../../src/log.ts'
import type { RequestContext } from '../../src/pipeline/context.ts'
import type { Stage, StreamOutcome } from '../../src/pipeline/stage.ts'
import { EXT_PROC_SERVICE } from '../../src/server/codec.ts'
import { answerKind, connectExtProc, connectHealth, denialJson, msg, mtlsAttributes, type ExtProcClient } from '../helpers/grpc-client.ts'
import { permitAllPolicyDir } from '../helpers/policies.ts'
import { keylessCatalog } from '../helpers/providers.ts'

const TD = 'example.org'
const CHECKOUT = `spiffe://${TD}/ns/payments/sa/checkout`
const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })

const pkiDir = t.testdir()
const ca = await createCa(pkiDir, 'ca')
const ATTRS = mtlsAttributes(readFileSync((await issueCertificate(pkiDir, ca, { name: 'checkout', uris: [CHECKOUT] })).cert, 'utf8'), CHECKOUT)

// Unix socket paths are limited to ~107 bytes: keep them short, outside the test fixture tree.
const sockDir = mkdtempSync(join(tmpdir(), 'mg-'))
t.teardown(() => rmSync(sockDir, { recursive: true, force: true }))

const headers = (id: string) => ({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json', 'x-request-id': id })

async function start(name: string, drainTimeoutMs: number): Promise<{ app: App; client: ExtProcClient; closed: Map<string, StreamOutcome[]> }> {
  const closed = new Map<string, StreamOutcome[]>()
  const probe: Stage = {
    name: 'probe',
    close(ctx: RequestContext, outcome) {
      closed.set(ctx.id, [...(closed.get(ctx.id) ?? []), outcome])
    },
  }
  const config = configFromObject(
    { server: { listen: `unix://${join(sockDir, name)}.sock`, drainTimeoutMs }, identity: { trustDomains: [TD] }, providers: keylessCatalog(), audit: { enabled: false }, redaction: { enabled: false }, policy: { dir: permitAllPolicyDir(), watch: false } },
    'lifecycle.test',
  )
  const app = await startApp({ config, logger: silentLogger, extraStages: { last: [probe] } })
  const client = connectExtProc(app.address)
  t.teardown(async () => {
    client.close()
    await app.shutdown()
  })
  return { app, client, closed }
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (cond()) return
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error(`gave up waiting for ${what}`)
}

t.test('the server listens on a Unix socket and serves a whole exchange there', async (t) => {
  const { app, client, closed } = await start('exchange', 2000)
  t.equal(app.address, `unix://${join(sockDir, 'exchange')}.sock`)
  t.ok(existsSync(join(sockDir, 'exchange.sock')))
  const s = client.open()
  t.equal(answerKind(await s.exchange(msg.requestHeaders(headers('unix-1'), { attributes: ATTRS }))), 'request_headers')
  t.equal(answerKind(await s.exchange(msg.requestBody(CHAT))), 'request_body')
  t.equal(answerKind(await s.exchange(msg.responseHeaders({ ':status': '200', 'content-type': 'application/json' }))), 'response_headers')
  t.equal(answerKind(await s.exchange(msg.responseBody('{"usage":{"prompt_tokens":1}}', true))), 'response_body')
  t.same(await s.end(), { code: 0, details: 'OK' })
  t.same(closed.get('unix-1'), [{ kind: 'completed' }])
})

t.test('a stale socket file left by a crashed process does not stop the server from starting', async (t) => {
  const { app: first } = await start('stale', 2000)
  // Simulate a crash: the socket file stays while a new process starts on the same path.
  const { app: second, client } = await start('stale', 2000)
  t.equal(second.address, first.address)
  const s = client.open()
  t.equal(answerKind(await s.exchange(msg.requestHeaders(headers('stale-1'), { attributes: ATTRS }))), 'request_headers')
  await s.end()
})

t.test('health reports SERVING for the server and the ext_proc service', async (t) => {
  const { app } = await start('health', 2000)
  const health = connectHealth(app.address)
  t.teardown(() => health.close())
  t.equal(await health.check(''), 'SERVING')
  t.equal(await health.check(EXT_PROC_SERVICE), 'SERVING')
  await t.rejects(health.check('no.such.Service'), { code: grpc.status.NOT_FOUND })
})

t.test('graceful shutdown: NOT_SERVING, new requests refused, the open stream drained, then closed', async (t) => {
  const { app, client, closed } = await start('drain', 5000)
  const health = connectHealth(app.address)
  t.teardown(() => health.close())
  const watch = health.watch('')
  t.equal(await watch.next(), 'SERVING')

  const inFlight = client.open()
  t.equal(answerKind(await inFlight.exchange(msg.requestHeaders(headers('drain-1'), { attributes: ATTRS }))), 'request_headers')
  const idle = client.open()
  idle.send({ request_trailers: { trailers: { headers: [] } } }) // any message: makes the server open the stream
  await waitFor(() => app.server.openStreams() === 2, 'both streams to be open on the server')
  idle.cancel()
  await waitFor(() => app.server.openStreams() === 1, 'the idle stream to go')

  let stopped = false
  const stopping = app.shutdown().then(() => void (stopped = true))
  t.equal(await watch.next(), 'NOT_SERVING', 'health watchers see NOT_SERVING')
  watch.cancel()

  // The stream that was already in flight is answered to the end.
  t.equal(answerKind(await inFlight.exchange(msg.requestBody(CHAT))), 'request_body')
  t.equal(answerKind(await inFlight.exchange(msg.responseHeaders({ ':status': '200', 'content-type': 'application/json' }))), 'response_headers')
  t.equal(answerKind(await inFlight.exchange(msg.responseBody('{"usage":{"prompt_tokens":1}}', true))), 'response_body')
  t.equal(stopped, false, 'shutdown waits for the open stream')
  t.same(await inFlight.end(), { code: 0, details: 'OK' })
  await stopping
  t.same(closed.get('drain-1'), [{ kind: 'completed' }])
  t.equal(app.server.openStreams(), 0)

  // After shutdown nothing is served.
  const late = client.open()
  late.send(msg.requestHeaders(headers('drain-late'), { attributes: ATTRS }))
  const end = await late.ended
  t.not(end.code, grpc.status.OK, `a stream opened after shutdown fails (${grpc.status[end.code]})`)
  t.same(late.received, [])
})

t.test('a stream whose request starts while draining is refused with 503', async (t) => {
  const { app, client, closed } = await start('refuse', 5000)
  const s = client.open()
  s.send({ request_trailers: { trailers: { headers: [] } } })
  t.equal(answerKind(await s.next()), 'request_trailers')
  const stopping = app.shutdown()
  s.send(msg.requestHeaders(headers('refuse-1'), { attributes: ATTRS }))
  const r = await s.next()
  t.equal(r.immediate_response?.status.code, 503)
  t.equal(denialJson(r).error.code, 'MG_SHUTTING_DOWN')
  t.same(await s.end(), { code: 0, details: 'OK' })
  await stopping
  t.same(closed.get('refuse-1'), [{ kind: 'completed' }])
})

t.test('the drain timeout closes streams that do not finish, and they are closed as cancelled', async (t) => {
  const { app, client, closed } = await start('timeout', 100)
  const s = client.open()
  t.equal(answerKind(await s.exchange(msg.requestHeaders(headers('stuck-1'), { attributes: ATTRS }))), 'request_headers')
  await app.shutdown()
  const end = await s.ended
  t.not(end.code, grpc.status.OK, `the stuck stream is reset (${grpc.status[end.code]})`)
  await waitFor(() => closed.has('stuck-1'), 'the stuck stream to close')
  t.same(closed.get('stuck-1')?.map((o) => o.kind), ['cancelled'])
  t.equal(app.server.openStreams(), 0)
})
