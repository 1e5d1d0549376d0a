/**
 * The body inspector: runs request body inspection (inspect.ts) for the
 * provider stage and leaves the scan for the redaction stage. Each
 * inspection has a deadline (the phase deadline); work past it stops with
 * MG_TIMEOUT.
 */
import { DEFAULT_JSON_LIMITS, type JsonLimits } from '../json/document.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { ApiRoute } from '../providers/routes.ts'
import type { ParsedRequest } from '../providers/types.ts'
import type { DocumentScan } from '../redaction/document.ts'
import type { RedactionEngine } from '../redaction/engine.ts'
import type { ScanSubject } from '../redaction/types.ts'
import { inspectRequestBody, refusalError, type InspectionJob } from './inspect.ts'

const SCAN = Symbol('inspection.scan')
const scanHolder = (ctx: RequestContext) => ctx.local<{ scan: DocumentScan | undefined }>(SCAN, () => ({ scan: undefined }))

/** The request scan the inspection left for the redaction stage (undefined: none was made). */
export function requestScanOf(ctx: RequestContext): DocumentScan | undefined {
  return scanHolder(ctx).scan
}

/** The caller a scan runs for: selects scoped custom detectors. */
export function scanSubjectOf(ctx: RequestContext): ScanSubject | undefined {
  return ctx.identity ? { spiffeId: ctx.identity.spiffeId, namespace: ctx.identity.namespace } : undefined
}

export interface BodyInspector {
  /**
   * Parses `ctx.requestBody` for the route and returns the parsed request;
   * with scanning on, leaves the scan for `requestScanOf`. Throws a GateError
   * to refuse.
   */
  inspect(ctx: RequestContext, route: ApiRoute, providerName: string): Promise<ParsedRequest>
}

export interface BodyInspectorOptions {
  readonly limits?: JsonLimits
  /** Scan request bodies with this engine (redaction on); without one, bodies are parsed only. */
  readonly engine?: RedactionEngine
  /** Time for one inspection (the phase deadline). */
  readonly budgetMs?: number
}

/** An inspector that inspects every body in this thread. */
export function inProcessInspector(opts: BodyInspectorOptions = {}): BodyInspector {
  const limits = opts.limits ?? DEFAULT_JSON_LIMITS
  const engine = opts.engine
  const budgetMs = opts.budgetMs ?? 800
  return {
    async inspect(ctx, route, providerName) {
      const job: InspectionJob = {
        body: ctx.requestBody,
        route,
        providerName,
        scan: engine !== undefined,
        subject: scanSubjectOf(ctx),
        limits,
        deadline: Date.now() + budgetMs,
      }
      const outcome = inspectRequestBody(job, engine)
      if (!outcome.ok) throw refusalError(outcome.refusal)
      scanHolder(ctx).scan = outcome.scan
      return outcome.request
    },
  }
}

