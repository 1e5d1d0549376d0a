/**
 * The gRPC server: the ext_proc service, grpc.health.v1, and graceful shutdown
 * (health goes NOT_SERVING, new streams are refused, open streams drain, then
 * the server closes).
 */
import { rmSync } from 'node:fs'
import * as grpc from '@grpc/grpc-js'
import { HealthImplementation } from 'grpc-health-check'
import type { Logger } from '../log.ts'
import type { Pipeline } from '../pipeline/pipeline.ts'
import { EXT_PROC_SERVICE, loadExtProcService } from './codec.ts'
import { createProcessHandler } from './process.ts'
import { watchConnections, type ConnectionClosed, type StreamReset, type TransportEvent } from './transport.ts'

export interface ServerOptions {
  readonly listen: string
  readonly maxBodyBytes: number
  readonly drainTimeoutMs: number
  readonly pipeline: Pipeline
  readonly logger: Logger
  /** Told about every ext_proc stream reset and every connection that ends with streams open (metrics). */
  readonly onTransportEvent?: (event: TransportEvent) => void
}

export interface RunningServer {
  /** The address actually bound (`unix:///…` or `host:port` with the real port). */
  readonly address: string
  readonly health: HealthImplementation
  /** Number of ext_proc streams open now. */
  openStreams(): number
  /** Graceful stop: NOT_SERVING, refuse new streams, wait for open ones up to the drain timeout. */
  shutdown(): Promise<void>
}

/** Room for headers and framing on top of the largest body. */
const MESSAGE_OVERHEAD = 256 * 1024

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const maxMessage = opts.maxBodyBytes + MESSAGE_OVERHEAD
  const server = new grpc.Server({
    'grpc.max_receive_message_length': maxMessage,
    'grpc.max_send_message_length': maxMessage,
    'grpc.max_concurrent_streams': 100000,
    'grpc.keepalive_permit_without_calls': 1,
    // Channelz stays on although nothing serves it: with it off, grpc-js's forceShutdown no longer
    // reaches open HTTP/2 sessions, and the drain timeout would leave stuck streams open.
  })
  let draining = false
  let open = 0
  const transport = transportReporter(opts.logger, opts.onTransportEvent)
  const health = new HealthImplementation({ '': 'SERVING', [EXT_PROC_SERVICE]: 'SERVING' })
  health.addToServer(server)
  server.addService(loadExtProcService(), {
    Process: createProcessHandler({
      pipeline: opts.pipeline,
      logger: opts.logger,
      maxBodyBytes: opts.maxBodyBytes,
      draining: () => draining,
      onOpen: () => open++,
      onClose: () => open--,
      onReset: transport.streamReset,
    }),
  })

  const target = opts.listen
  if (target.startsWith('unix://')) {
    const bytes = Buffer.byteLength(target.slice('unix://'.length))
    if (bytes > 107) throw new Error(`server.listen: the unix socket path is ${bytes} bytes long; the operating system allows at most 107`)
    // A stale socket from a crashed process would make bind fail.
    try {
      rmSync(target.slice('unix://'.length), { force: true })
    } catch {
      /* bind reports the real problem */
    }
  }
  const connections = watchConnections(transport.connectionClosed)
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)))
  }).catch((err: unknown) => {
    connections.stop()
    throw err
  })
  const address = target.startsWith('unix://') ? target : target.replace(/:\d+$/, `:${port}`)
  opts.logger.info('listening', { address, max_message_bytes: maxMessage })

  let stopping: Promise<void> | undefined
  return {
    address,
    health,
    openStreams: () => open,
    shutdown() {
      stopping ??= (async () => {
        draining = true
        connections.shuttingDown()
        health.setStatus('', 'NOT_SERVING')
        health.setStatus(EXT_PROC_SERVICE, 'NOT_SERVING')
        opts.logger.info('draining', { open_streams: open, drain_timeout_ms: opts.drainTimeoutMs })
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            opts.logger.warn('drain timeout reached; closing remaining streams', { open_streams: open })
            server.forceShutdown()
            resolve()
          }, opts.drainTimeoutMs)
          timer.unref()
          server.tryShutdown(() => {
            clearTimeout(timer)
            resolve()
          })
        })
        // Connections that ended with the shutdown report on the next turn.
        await new Promise((r) => setImmediate(r))
        connections.stop()
        opts.logger.info('stopped')
      })()
      return stopping
    },
  }
}

/** How many resets after a fully answered exchange pass between two summary log lines. */
const ANSWERED_RESET_LOG_EVERY = 1000

/**
 * Logs transport events and passes them on. A reset before the exchange was
 * answered cut a request short and is logged each time; a reset after it
 * (what Envoy does without `ext_proc_graceful_grpc_close`) is logged as a
 * running count, since it would otherwise log every request.
 */
function transportReporter(logger: Logger, hook: ((e: TransportEvent) => void) | undefined) {
  let answeredResets = 0
  return {
    streamReset(e: StreamReset): void {
      if (!e.answered) {
        logger.warn('ext_proc stream reset before it was answered', { request_id: e.requestId, phase: e.phase, open_ms: e.openMs })
      } else if (answeredResets++ % ANSWERED_RESET_LOG_EVERY === 0) {
        logger.info('Envoy resets ext_proc streams after they were answered; enable envoy.reloadable_features.ext_proc_graceful_grpc_close', { resets: answeredResets })
      }
      hook?.(e)
    },
    connectionClosed(e: ConnectionClosed): void {
      logger.warn(e.by === 'modelgate' ? 'modelgate closed an ext_proc connection' : 'Envoy closed an ext_proc connection with streams open', {
        by: e.by,
        reason: e.reason,
        streams_open: e.streamsOpen,
        streams: e.streams,
        age_ms: e.ageMs,
      })
      hook?.(e)
    },
  }
}
