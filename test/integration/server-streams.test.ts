/**
 * How ext_proc streams end, on the real gRPC server over a Unix socket: a
 * half-close is answered with OK promptly but never before the answers Envoy
 * is owed; resets and connections that end with streams open are logged,
 * reported and counted.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { connect as netConnect, createServer as netServer } from 'node:net'
import { connect as http2Connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { startApp } from '../../src/app.ts'
import { configFromObject } from '../../src/config/config.ts'
import { createLogger } from '../../src/log.ts'
import { Pipeline } from '../../src/pipeline/pipeline.ts'
import type { Stage, StreamOutcome } from '../../src/pipeline/stage.ts'
import { startServer, type RunningServer } from '../../src/server/server.ts'
import { PROCESS_PATH, type TransportEvent } from '../../src/server/transport.ts'
import { answerKind, connectExtProc, msg, type ExtProcClient } from '../helpers/grpc-client.ts'
import { permitAllPolicyDir } from '../helpers/policies.ts'

// Unix socket paths are limited to ~107 bytes: keep them short, outside the test fixture tree.
const sockDir = mkdtempSync(join(tmpdir(), 'mg-st-'))
t.teardown(() => rmSync(sockDir, { recursive: true, force: true }))

const headers = (id: string) => ({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json', 'x-request-id': id })
const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })

interface Harness {
  server: RunningServer
  client: ExtProcClient
  socket: string
  events: TransportEvent[]
  logs: Record<string, unknown>[]
  closed: Map<string, StreamOutcome[]>
  /** Milliseconds the request-body phase takes (0: immediate). */
  bodyDelayMs: number
}

type TestT = Parameters<Parameters<typeof t.test>[0]>[0]

async function harness(t: TestT, name: string): Promise<Harness> {
  const socket = join(sockDir, `${name}.sock`)
  const logs: Record<string, unknown>[] = []
  const events: TransportEvent[] = []
  const closed = new Map<string, StreamOutcome[]>()
  const h = { events, logs, closed, socket, bodyDelayMs: 0 } as Harness
  const probe: Stage = {
    name: 'probe',
    requestBody: () => (h.bodyDelayMs ? new Promise<void>((r) => setTimeout(r, h.bodyDelayMs)) : undefined),
    close(ctx, outcome) {
      closed.set(ctx.id, [...(closed.get(ctx.id) ?? []), outcome])
    },
  }
  h.server = await startServer({
    listen: `unix://${socket}`,
    maxBodyBytes: 1 << 20,
    drainTimeoutMs: 500,
    pipeline: new Pipeline([probe], { phaseTimeoutMs: 5000 }),
    logger: createLogger({ level: 'debug', write: (l) => logs.push(JSON.parse(l) as Record<string, unknown>) }),
    onTransportEvent: (e) => events.push(e),
  })
  h.client = connectExtProc(h.server.address)
  t.teardown(async () => {
    h.client.close()
    await h.server.shutdown()
  })
  return h
}

async function waitFor(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** The whole exchange Envoy runs for a buffered chat completion. */
async function fullExchange(s: ReturnType<ExtProcClient['open']>, id: string): Promise<void> {
  await s.exchange(msg.requestHeaders(headers(id)))
  await s.exchange(msg.requestBody(CHAT))
  await s.exchange(msg.responseHeaders({ ':status': '200', 'content-type': 'application/json' }))
  await s.exchange(msg.responseBody('{"usage":{"prompt_tokens":1}}', true))
}

t.test('a stream Envoy half-closes after the exchange ends at once with status OK, and is a completed request', async (t) => {
  const h = await harness(t, 'half')
  const s = h.client.open()
  await fullExchange(s, 'half-1')
  const t0 = performance.now()
  t.same(await s.end(), { code: grpc.status.OK, details: 'OK' })
  t.ok(performance.now() - t0 < 1000, 'the status follows the half-close promptly (Envoy waits at most 1 s before it resets)')
  t.same(h.closed.get('half-1'), [{ kind: 'completed' }])
  t.same(h.events, [], 'nothing to report')
})

t.test('a half-close that arrives while a phase is still being decided gets the answer first, then OK', async (t) => {
  const h = await harness(t, 'owed')
  h.bodyDelayMs = 150
  const s = h.client.open()
  t.equal(answerKind(await s.exchange(msg.requestHeaders(headers('owed-1')))), 'request_headers')
  s.send(msg.requestBody(CHAT))
  s.call.end() // Envoy half-closes before the body is decided
  const end = await s.ended
  t.same(end, { code: grpc.status.OK, details: 'OK' })
  t.same(
    s.received.map(answerKind),
    ['request_headers', 'request_body'],
    'the body was answered before the stream ended: OK never stands in for an owed answer',
  )
})

t.test('a half-close before the exchange was answered (the caller went away) ends OK and is a cancellation', async (t) => {
  const h = await harness(t, 'gone')
  const s = h.client.open()
  await s.exchange(msg.requestHeaders(headers('gone-1')))
  await s.exchange(msg.requestBody(CHAT))
  t.same(await s.end(), { code: grpc.status.OK, details: 'OK' })
  t.same(h.closed.get('gone-1'), [{ kind: 'cancelled' }])
  t.same(h.events, [], 'a half-close is not a reset')
})

t.test('a stream reset before it was answered is logged, reported and a cancellation', async (t) => {
  const h = await harness(t, 'reset')
  const s = h.client.open()
  await s.exchange(msg.requestHeaders(headers('reset-1')))
  s.cancel()
  await waitFor(() => h.closed.has('reset-1'), 'the stream to close')
  t.same(h.closed.get('reset-1'), [{ kind: 'cancelled' }])
  t.equal(h.events.length, 1)
  t.match(h.events[0], { kind: 'stream_reset', requestId: 'reset-1', answered: false, phase: 'request_headers' })
  t.match(
    h.logs.find((l) => l.msg === 'ext_proc stream reset before it was answered'),
    { level: 'warn', request_id: 'reset-1', phase: 'request_headers' },
  )
})

t.test('a reset after every message was answered is reported as answered and is a completed request', async (t) => {
  const h = await harness(t, 'after')
  for (const id of ['after-1', 'after-2']) {
    const s = h.client.open()
    await fullExchange(s, id)
    s.cancel()
    await waitFor(() => h.closed.has(id), 'the stream to close')
    t.same(h.closed.get(id), [{ kind: 'completed' }])
  }
  t.match(h.events, [
    { kind: 'stream_reset', requestId: 'after-1', answered: true, phase: 'response_body' },
    { kind: 'stream_reset', requestId: 'after-2', answered: true, phase: 'response_body' },
  ])
  const summaries = h.logs.filter((l) => String(l.msg).startsWith('Envoy resets ext_proc streams after they were answered'))
  t.same(
    summaries.map((l) => [l.level, l.resets]),
    [['info', 1]],
    'answered resets are logged as a running count, not one line each',
  )
})

t.test('a stream that cannot even be denied ends at once with an error status, never OK', async (t) => {
  const socket = join(sockDir, 'abort.sock')
  const closed: StreamOutcome[] = []
  const deny: Stage = {
    name: 'deny',
    requestHeaders: () => Promise.reject(new Error('stage failure')),
    close: (_ctx, outcome) => void closed.push(outcome),
  }
  // The denial path itself fails (here: its log line), so the stream can only be ended.
  const logger = createLogger({
    level: 'debug',
    write: (l) => {
      if (l.includes('"request denied"')) throw new Error('log sink failure')
    },
  })
  const server = await startServer({ listen: `unix://${socket}`, maxBodyBytes: 1 << 20, drainTimeoutMs: 500, pipeline: new Pipeline([deny], { phaseTimeoutMs: 5000 }), logger })
  const client = connectExtProc(server.address)
  t.teardown(async () => {
    client.close()
    await server.shutdown()
  })
  const s = client.open()
  s.send(msg.requestHeaders(headers('abort-1')))
  const end = await Promise.race([s.ended, new Promise<'none'>((r) => setTimeout(() => r('none'), 3000))])
  t.same(end, { code: grpc.status.INTERNAL, details: 'modelgate failed; see its log' }, 'an error status, promptly')
  t.same(s.received, [], 'no answer was sent')
  t.match(closed, [{ kind: 'error' }])
})

// ---- connections, driven by a raw HTTP/2 client the way Envoy uses them --------------------------

/** An HTTP/2 connection to the server's Unix socket, as Envoy opens it. */
function rawConnection(socket: string): ClientHttp2Session {
  const session = http2Connect('http://localhost', { createConnection: () => netConnect(socket) })
  session.on('error', () => {})
  return session
}

/** A gRPC frame carrying an empty `request_trailers` ProcessingRequest (field 6). */
const TRAILERS_FRAME = Buffer.from([0, 0, 0, 0, 2, 0x32, 0x00])

/** Opens a Process stream and sends one message; resolves once the server answered it. */
function openProcess(session: ClientHttp2Session): Promise<ClientHttp2Stream> {
  const stream = session.request({ ':method': 'POST', ':path': PROCESS_PATH, 'content-type': 'application/grpc', te: 'trailers' }, { endStream: false })
  stream.on('error', () => {})
  stream.write(TRAILERS_FRAME)
  return new Promise((resolve, reject) => {
    stream.once('data', () => resolve(stream))
    stream.once('close', () => reject(new Error(`the stream closed before an answer (rst ${stream.rstCode})`)))
  })
}

t.test('a flood of resets makes Node end the connection with GOAWAY: reported as closed by modelgate, with the stream it cut', async (t) => {
  const h = await harness(t, 'flood')
  const session = rawConnection(h.socket)
  t.teardown(() => session.destroy())
  await openProcess(session) // held open across the flood
  let goaway: number | undefined
  session.once('goaway', (code) => (goaway = code))
  // More resets than nghttp2's allowance (1000, refilled at 33/s), as fast as a saturated Envoy sends them.
  for (let i = 0; i < 1500 && goaway === undefined && !session.destroyed; i++) {
    const s = await openProcess(session).catch(() => undefined)
    s?.close(h2.NGHTTP2_CANCEL)
  }
  t.equal(goaway, h2.NGHTTP2_INTERNAL_ERROR, 'the server sent GOAWAY')
  await waitFor(() => h.events.some((e) => e.kind === 'connection_closed'), 'the connection report')
  const closed = h.events.find((e) => e.kind === 'connection_closed')
  t.match(closed, { kind: 'connection_closed', by: 'modelgate', reason: /^http2_error / })
  const [open, carried] = closed?.kind === 'connection_closed' ? [closed.streamsOpen, closed.streams] : [0, 0]
  t.ok(open >= 1, `the streams open at the time were counted, the held one among them (${open})`)
  t.ok(carried > 1000, `it had carried every stream (${carried})`)
  t.match(h.logs.find((l) => l.msg === 'modelgate closed an ext_proc connection'), { level: 'warn', by: 'modelgate', streams_open: open })
  const resets = h.events.filter((e) => e.kind === 'stream_reset')
  t.ok(resets.length > 1000, 'every reset stream was reported too')
})

t.test('Envoy ending a connection with a stream open is reported as closed by Envoy', async (t) => {
  const h = await harness(t, 'peer')
  const session = rawConnection(h.socket)
  await openProcess(session)
  await openProcess(session)
  session.socket.destroy()
  await waitFor(() => h.events.some((e) => e.kind === 'connection_closed'), 'the connection report')
  t.match(
    h.events.find((e) => e.kind === 'connection_closed'),
    { kind: 'connection_closed', by: 'envoy', streamsOpen: 2, streams: 2 },
  )
  t.match(h.logs.find((l) => l.msg === 'Envoy closed an ext_proc connection with streams open'), { level: 'warn', by: 'envoy', streams_open: 2 })
  t.equal(h.events.filter((e) => e.kind === 'stream_reset').length, 2, 'and each cut stream as a reset')
})

t.test('a connection Envoy ends with nothing open is ordinary: not reported', async (t) => {
  const h = await harness(t, 'idle')
  const session = rawConnection(h.socket)
  const s = await openProcess(session)
  s.end() // half-close: the server ends the stream OK
  await new Promise((r) => s.once('close', r))
  session.close()
  await new Promise((r) => session.once('close', r))
  await new Promise((r) => setTimeout(r, 50))
  t.same(h.events, [])
})

t.test('resets and closed connections are counted in the Prometheus metrics', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const srv = netServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as { port: number }).port
      srv.close(() => resolve(p))
    })
  })
  const socket = join(sockDir, 'metrics.sock')
  const app = await startApp({
    config: configFromObject(
      {
        server: { listen: `unix://${socket}`, metricsListen: `127.0.0.1:${port}` },
        identity: { trustDomains: ['example.org'] },
        policy: { dir: permitAllPolicyDir(), watch: false },
        audit: { otlp: 'off', metrics: { otlp: 'off' } },
      },
      'streams.test',
    ),
    logger: createLogger({ level: 'error', write: () => {} }),
  })
  t.teardown(() => app.shutdown())
  const client = connectExtProc(app.address)
  t.teardown(() => client.close())
  const s = client.open()
  await s.exchange(msg.requestHeaders(headers('metrics-1'))) // no identity: denied, so answered
  s.cancel() // a reset after the answer
  const session = rawConnection(socket)
  await openProcess(session)
  session.socket.destroy() // a connection ended with a stream open (and that stream reset)
  const scrape = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  let text = await scrape()
  const deadline = Date.now() + 3000
  while (!/^modelgate_extproc_connections_closed_total\{/m.test(text) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20))
    text = await scrape()
  }
  const line = (re: RegExp) => text.split('\n').find((l) => re.test(l))
  t.equal(line(/^modelgate_extproc_stream_resets_total\{.*"true"/), 'modelgate_extproc_stream_resets_total{modelgate_stream_answered="true"} 1')
  t.equal(line(/^modelgate_extproc_stream_resets_total\{.*"false"/), 'modelgate_extproc_stream_resets_total{modelgate_stream_answered="false"} 1')
  t.equal(line(/^modelgate_extproc_connections_closed_total\{/), 'modelgate_extproc_connections_closed_total{modelgate_connection_closed_by="envoy"} 1')
})
