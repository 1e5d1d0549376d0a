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

export interface ServerOptions {
  readonly listen: string
  readonly maxBodyBytes: number
  readonly drainTimeoutMs: number
  readonly pipeline: Pipeline
  readonly logger: Logger
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
  })
  let draining = false
  let open = 0
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
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)))
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
        opts.logger.info('stopped')
      })()
      return stopping
    },
  }
}
