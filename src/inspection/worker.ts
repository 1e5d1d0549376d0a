/**
 * A body inspection pool worker. The redaction engine is compiled once, when
 * the worker starts, from the same (validated, plain) redaction
 * configuration as the main thread's. Findings are hashed on the main thread,
 * so the worker needs no salt and hashes stay consistent.
 */
import { readlinkSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'
import { workerData } from 'node:worker_threads'
import type { RedactionConfig } from '../config/sections/redaction.ts'
import { compileRedaction } from '../redaction/engine.ts'
import { inspectRequestBody, type InspectionJob, type InspectionOutcome } from './inspect.ts'

const data = workerData as { readonly redaction: RedactionConfig | undefined; readonly nice: number }

/**
 * Lowers this thread's scheduling priority. On Linux a priority set on a task
 * id applies to that thread alone, and /proc/thread-self names this thread's:
 * the event loop and Envoy keep theirs, so a large body (or many) costs other
 * requests less of the CPU. Raising niceness needs no privilege; where it
 * cannot be done (no /proc), the worker runs at the process's priority.
 */
function lowerPriority(nice: number): void {
  if (nice <= 0 || process.platform !== 'linux') return
  let tid: number
  try {
    tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
  } catch {
    return
  }
  // Only ever lower: a process already running nicer keeps its niceness.
  if (Number.isInteger(tid) && tid > 0 && getPriority(tid) < nice) setPriority(tid, nice)
}
lowerPriority(data.nice)
// An empty environment: the salt is never needed here.
const engine = data.redaction ? compileRedaction(data.redaction, {}) : undefined

export default function inspect(job: InspectionJob): InspectionOutcome {
  return inspectRequestBody(job, engine)
}
