/**
 * The body inspector: runs request body inspection (inspect.ts) in this
 * thread for small bodies and in a worker pool for large ones, so that
 * parsing and scanning a large body never holds up other requests' streams.
 *
 * The pool is created at start-up and warmed (every worker has compiled its
 * redaction engine before the server listens); it is closed at shutdown. A
 * worker that fails, or a pool that is gone, refuses the request
 * (MG_INTERNAL): nothing passes uninspected. Each inspection has a deadline
 * (the phase deadline); work past it stops with MG_TIMEOUT, also in a worker.
 */
import { availableParallelism } from 'node:os'
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import type { RedactionConfig } from '../config/sections/redaction.ts'
import { GateError } from '../errors.ts'
import { DEFAULT_JSON_LIMITS, type JsonLimits } from '../json/document.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { ApiRoute } from '../providers/routes.ts'
import type { ParsedRequest } from '../providers/types.ts'
import type { DocumentScan } from '../redaction/document.ts'
import type { RedactionEngine } from '../redaction/engine.ts'
import type { ScanSubject } from '../redaction/types.ts'
import { inspectRequestBody, refusalError, type InspectionJob, type InspectionOutcome } from './inspect.ts'

const SCAN = Symbol('inspection.scan')
const scanHolder = (ctx: RequestContext) => ctx.local<{ scan: DocumentScan | undefined }>(SCAN, () => ({ scan: undefined }))

/** The request scan the inspection left for the redaction stage (undefined: none was made). */
export function requestScanOf(ctx: RequestContext): DocumentScan | undefined {
  return scanHolder(ctx).scan
}

/** The caller a scan runs for: selects scoped custom detectors. */
export function scanSubjectOf(ctx: RequestContext): ScanSubject | undefined {
  return ctx.out.caller?.workload ? { spiffeId: ctx.out.caller?.workload.spiffeId, namespace: ctx.out.caller?.workload.namespace } : undefined
}

export interface BodyInspector {
  /**
   * Parses `ctx.requestBody` for the route and returns the parsed request;
   * with scanning on, leaves the scan for `requestScanOf`. Throws a GateError
   * to refuse. A body inspected in this thread is answered at once (no
   * promise, so the phase needs no timer); one sent to a worker, through a
   * promise.
   */
  inspect(ctx: RequestContext, route: ApiRoute, providerName: string): ParsedRequest | Promise<ParsedRequest>
  /** Stops the pool (after the server has drained). */
  close(): Promise<void>
}

export interface BodyInspectorOptions {
  readonly limits?: JsonLimits
  /** Scan request bodies with this engine (redaction on); without one, bodies are parsed only. */
  readonly engine?: RedactionEngine
  /** Worker threads: 0 inspects every body in this thread. */
  readonly workers?: number
  /** Bodies of at least this many bytes go to the pool. */
  readonly workerMinBytes?: number
  /** Time for one inspection (the phase deadline). */
  readonly budgetMs?: number
  /** The worker module (default: worker.ts beside this file); for fault-injection tests. */
  readonly workerFile?: string
  /** The largest body a worker may get (sizes the workers' heaps). */
  readonly maxBodyBytes?: number
  /** Told about a worker that failed outside a task (its tasks are refused either way). */
  readonly onWorkerError?: (err: Error) => void
  /** Measure each body's input for quotas (see InspectionJob.measure). */
  readonly measure?: 'chars' | 'tokens'
}

/** Worker threads when the configuration says 0 (auto): every core but the main thread's, at least one. */
export function autoWorkers(): number {
  return Math.max(1, availableParallelism() - 1)
}

const WORKER_FILE = fileURLToPath(new URL(`./worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url))

/**
 * Builds the inspector and, with workers, starts and warms the pool: the
 * promise settles once every worker has compiled its engine, or rejects.
 */
export async function createBodyInspector(opts: BodyInspectorOptions = {}): Promise<BodyInspector> {
  const workers = opts.workers ?? 0
  if (workers <= 0) return inProcessInspector(opts)
  const limits = opts.limits ?? DEFAULT_JSON_LIMITS
  const redaction: RedactionConfig | undefined = opts.engine?.config
  const pool = new Piscina<InspectionJob, InspectionOutcome>({
    filename: opts.workerFile ?? WORKER_FILE,
    minThreads: workers,
    maxThreads: workers,
    idleTimeout: Number.MAX_SAFE_INTEGER,
    workerData: { redaction },
    // Workers need none of the main thread's node options (a test runner's loaders, say): plain Node runs the worker module.
    execArgv: [],
    // Small heaps: a worker collects its garbage early instead of growing, and a body that needs more fails closed.
    resourceLimits: { maxOldGenerationSizeMb: oldGenerationMb(opts.maxBodyBytes ?? 1 << 20, limits.maxValues), maxYoungGenerationSizeMb: 8 },
  })
  // A worker's own failure (not a task's) is reported here; its tasks are refused and piscina starts a replacement.
  let starting = true
  let startupError: Error | undefined
  pool.on('error', (err: Error) => {
    if (starting) startupError ??= err
    opts.onWorkerError?.(err)
  })
  try {
    // Every worker loads and compiles before the server listens; a broken worker fails start-up.
    await Promise.all(Array.from({ length: workers }, () => pool.run(warmUpJob(limits, opts.engine !== undefined, opts.measure))))
    if (startupError) throw startupError
    starting = false
  } catch (err) {
    await pool.destroy()
    const cause = startupError ?? err
    throw new Error(`body inspection workers failed to start: ${(cause as Error).message}`, { cause })
  }
  return makeInspector(opts, pool)
}

/** An inspector without a pool: every body is inspected in this thread. */
export function inProcessInspector(opts: Omit<BodyInspectorOptions, 'workers' | 'workerMinBytes'> = {}): BodyInspector {
  return makeInspector(opts, undefined)
}

function makeInspector(opts: BodyInspectorOptions, pool: Piscina<InspectionJob, InspectionOutcome> | undefined): BodyInspector {
  const limits = opts.limits ?? DEFAULT_JSON_LIMITS
  const engine = opts.engine
  const budgetMs = opts.budgetMs ?? 800
  const minBytes = opts.workerMinBytes ?? 64 * 1024
  let closed = false
  return {
    inspect(ctx, route, providerName) {
      const body = ctx.requestBody
      const offload = pool !== undefined && body.length >= minBytes
      const job: InspectionJob = {
        // A worker gets its own copy of exactly the body's bytes, moved rather than cloned.
        body: offload ? new Uint8Array(body) : body,
        route: { ...route },
        providerName,
        scan: engine !== undefined,
        subject: scanSubjectOf(ctx),
        limits,
        deadline: Date.now() + budgetMs,
        ...(opts.measure ? { measure: opts.measure } : {}),
      }
      if (!offload) return settle(ctx, inspectRequestBody(job, engine))
      if (closed) throw new GateError('MG_INTERNAL', { internal: 'body inspection pool is closed' })
      return pool!.run(job, { transferList: [(job.body as Uint8Array<ArrayBuffer>).buffer] }).then(
        (outcome) => settle(ctx, outcome),
        (err: unknown) => {
          throw new GateError('MG_INTERNAL', { internal: `body inspection worker failed: ${(err as Error)?.message ?? String(err)}`, cause: err })
        },
      )
    },
    async close() {
      closed = true
      if (pool) await pool.close()
    },
  }
}

/** The parsed request of an inspection, its scan left for the redaction stage; a refusal throws. */
function settle(ctx: RequestContext, outcome: InspectionOutcome): ParsedRequest {
  if (!outcome.ok) throw refusalError(outcome.refusal)
  scanHolder(ctx).scan = outcome.scan
  return Object.freeze({ ...outcome.request, tools: Object.freeze([...outcome.request.tools]) })
}

/**
 * A worker's old-generation heap: room for the text, value and leaves of the
 * largest body several times over (a 1 MiB body of 100,000 values keeps about
 * 15 MB alive while it is parsed; a value and its leaf take about 100 bytes).
 */
function oldGenerationMb(maxBodyBytes: number, maxValues: number): number {
  const values = Math.min(maxValues, maxBodyBytes / 2)
  return Math.max(64, Math.ceil((maxBodyBytes * 8 + values * 300) / (1 << 20)))
}

function warmUpJob(limits: JsonLimits, scan: boolean, measure: BodyInspectorOptions['measure']): InspectionJob {
  return {
    ...(measure ? { measure } : {}),
    body: Buffer.from('{"model":"warm-up","messages":[{"role":"user","content":"warm-up"}]}'),
    route: { kind: 'openai', operation: 'chat', api: 'openai.chat_completions' },
    providerName: 'openai',
    scan,
    subject: undefined,
    limits,
    deadline: Date.now() + 60_000,
  }
}
