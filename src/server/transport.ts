/**
 * What happens to the HTTP/2 connections Envoy opens to modelgate: which of
 * them end while ext_proc streams are still open, and who ended them.
 *
 * grpc-js does not expose its HTTP/2 sessions, so this watches Node's
 * `http2.server.stream.created` diagnostics channel: the first ext_proc stream
 * seen on a session attaches listeners to that session. A stream that closes
 * aborted (its response side never finished) while its session is going away
 * was cut by the connection's end. The subscription is process-wide: every
 * gRPC server in the process reports through it (one per process in
 * production). One imprecision: without Envoy's graceful close, the streams
 * Envoy resets itself just before it closes a drained connection (after
 * `max_requests_per_connection`) are counted as cut by the close as well.
 *
 * Why it matters: Node's HTTP/2 layer (nghttp2) answers a flood of
 * RST_STREAM frames with a GOAWAY and tears the connection down (its
 * rapid-reset protection: a bucket of 1000 resets, refilled at 33 per
 * second). Envoy then refuses every ext_proc stream it opened on that
 * connection in the meantime, and the callers get 500s.
 */
import dc from 'node:diagnostics_channel'
import type { Http2Session, IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2'
import { EXT_PROC_SERVICE } from './codec.ts'

/** The HTTP/2 path of the ext_proc `Process` call. */
export const PROCESS_PATH = `/${EXT_PROC_SERVICE}/Process`

/** A connection that ended with streams open, or that modelgate's own HTTP/2 layer ended. */
export interface ConnectionClosed {
  readonly kind: 'connection_closed'
  /** `envoy`: the peer went away (GOAWAY or end of socket); `modelgate`: this process ended it. */
  readonly by: 'envoy' | 'modelgate'
  /** e.g. `http2_error ERR_HTTP2_ERROR` (nghttp2 sent GOAWAY), `envoy_goaway 0`, `socket_closed`, `shutdown`. */
  readonly reason: string
  /** ext_proc streams the end of the connection cut. */
  readonly streamsOpen: number
  /** ext_proc streams the connection carried in all. */
  readonly streams: number
  readonly ageMs: number
}

/** An ext_proc stream Envoy reset (or lost with its connection) before modelgate ended it. */
export interface StreamReset {
  readonly kind: 'stream_reset'
  readonly requestId: string
  /** True when every message of the exchange had been answered (a reset after the fact). */
  readonly answered: boolean
  /** The last ext_proc message Envoy sent on the stream. */
  readonly phase: string | undefined
  readonly openMs: number
}

export type TransportEvent = ConnectionClosed | StreamReset

interface SessionState {
  readonly openedAt: number
  streams: number
  cut: number
  /** The first sign of the connection's end was seen (and who gave it). */
  goingAway: boolean
  /** The connection itself is ending: a stream aborted now was cut by it (a GOAWAY alone lets streams finish). */
  tearingDown: boolean
  reason: string | undefined
  by: 'envoy' | 'modelgate' | undefined
}

type Listener = (event: ConnectionClosed) => void

const CREATED = 'http2.server.stream.created'
const listeners = new Set<Listener>()
const sessions = new WeakMap<Http2Session, SessionState>()
let shuttingDown = 0

function goingAway(st: SessionState, by: 'envoy' | 'modelgate', reason: string): void {
  if (st.goingAway) return
  st.goingAway = true
  // While the server shuts down, connections end because modelgate ends them.
  if (shuttingDown > 0 && by === 'envoy') [by, reason] = ['modelgate', 'shutdown']
  st.by = by
  st.reason = reason
}

function track(session: Http2Session): SessionState {
  const st: SessionState = { openedAt: Date.now(), streams: 0, cut: 0, goingAway: false, tearingDown: false, reason: undefined, by: undefined }
  sessions.set(session, st)
  // A GOAWAY from Envoy drains the connection: its streams may still finish (or be reset one by one).
  session.once('goaway', (code: number) => goingAway(st, 'envoy', `envoy_goaway ${code}`))
  // The server already listens for session errors; this listener only takes note.
  session.once('error', (err: NodeJS.ErrnoException) => {
    goingAway(st, 'modelgate', `http2_error ${err.code ?? err.message}`)
    st.tearingDown = true
  })
  session.socket?.once('end', () => {
    goingAway(st, 'envoy', 'socket_closed')
    st.tearingDown = true
  })
  session.once('close', () => {
    goingAway(st, 'envoy', 'socket_closed')
    st.tearingDown = true
    // Streams cut by the teardown report their end on the next turn: look after them.
    setImmediate(() => {
      // A connection that ends with nothing open is ordinary, unless modelgate's HTTP/2 layer ended it.
      if (st.cut === 0 && !st.reason!.startsWith('http2_error')) return
      const event: ConnectionClosed = { kind: 'connection_closed', by: st.by!, reason: st.reason!, streamsOpen: st.cut, streams: st.streams, ageMs: Date.now() - st.openedAt }
      for (const l of listeners) l(event)
    })
  })
  return st
}

function onStreamCreated(message: unknown): void {
  const { stream, headers } = message as { stream: ServerHttp2Stream; headers: IncomingHttpHeaders }
  if (headers[':path'] !== PROCESS_PATH) return
  const session = stream.session
  if (!session) return
  const st = sessions.get(session) ?? track(session)
  st.streams++
  stream.once('close', () => {
    if (!stream.aborted) return
    // A stream the peer reset on a healthy connection is reported by the call itself; one
    // that ends because its connection is going away is counted here.
    setImmediate(() => {
      if (st.tearingDown || session.destroyed) st.cut++
    })
  })
}

/**
 * Reports connections that end with ext_proc streams open, and those this
 * process's HTTP/2 layer ends, to `listener` until the returned function is called.
 */
export function watchConnections(listener: Listener): { stop(): void; shuttingDown(): void } {
  if (listeners.size === 0) dc.subscribe(CREATED, onStreamCreated)
  listeners.add(listener)
  let closing = false
  return {
    stop() {
      if (closing) shuttingDown--
      closing = false
      if (!listeners.delete(listener)) return
      if (listeners.size === 0) dc.unsubscribe(CREATED, onStreamCreated)
    },
    shuttingDown() {
      if (closing) return
      closing = true
      shuttingDown++
    },
  }
}
