/**
 * A body inspection pool worker. The redaction engine is compiled once, when
 * the worker starts, from the same (validated, plain) redaction
 * configuration as the main thread's. Findings are hashed on the main thread,
 * so the worker needs no salt and hashes stay consistent.
 */
import { workerData } from 'node:worker_threads'
import type { RedactionConfig } from '../config/sections/redaction.ts'
import { compileRedaction } from '../redaction/engine.ts'
import { inspectRequestBody, type InspectionJob, type InspectionOutcome } from './inspect.ts'

const data = workerData as { readonly redaction: RedactionConfig | undefined }
// An empty environment: the salt is never needed here.
const engine = data.redaction ? compileRedaction(data.redaction, {}) : undefined

export default function inspect(job: InspectionJob): InspectionOutcome {
  return inspectRequestBody(job, engine)
}
