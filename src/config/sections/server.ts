/** `server`: where modelgate listens and how it treats the ext_proc stream. */
export interface ServerConfig {
  /** `unix:///path/to.sock` or `host:port` (loopback or pod address). */
  listen: string
  /** Largest request or response body modelgate accepts; also sets the gRPC message limit. */
  maxBodyBytes: number
  /** Deadline for one ext_proc phase; keep it below Envoy's message_timeout. */
  phaseTimeoutMs: number
  /** How long SIGTERM waits for open streams before closing them. */
  drainTimeoutMs: number
  /** Prometheus metrics endpoint (`host:port`), or empty to disable. */
  metricsListen: string
  /** Most JSON containers open at once in a request body (deeper: MG_BODY_TOO_DEEP). */
  maxJsonDepth: number
  /** Most JSON values and keys in a request body (more: MG_BODY_TOO_COMPLEX). */
  maxJsonValues: number
  /** Worker threads that inspect large bodies; 0: every core but one, at least one. */
  bodyWorkers: number
  /** Bodies of at least this many bytes are parsed and scanned in a worker thread. */
  bodyWorkerMinBytes: number
}

export const serverSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    listen: { type: 'string', minLength: 1, default: 'unix:///tmp/modelgate.sock', pattern: '^(unix://.+|[^\\s/]+:[0-9]{1,5})$' },
    maxBodyBytes: { type: 'integer', minimum: 1024, maximum: 67108864, default: 1048576 },
    phaseTimeoutMs: { type: 'integer', minimum: 10, maximum: 60000, default: 800 },
    drainTimeoutMs: { type: 'integer', minimum: 0, maximum: 600000, default: 10000 },
    metricsListen: { type: 'string', default: '' },
    maxJsonDepth: { type: 'integer', minimum: 1, maximum: 10000, default: 128 },
    maxJsonValues: { type: 'integer', minimum: 1, maximum: 10000000, default: 100000 },
    bodyWorkers: { type: 'integer', minimum: 0, maximum: 64, default: 0 },
    bodyWorkerMinBytes: { type: 'integer', minimum: 0, maximum: 67108864, default: 65536 },
  },
} as const
