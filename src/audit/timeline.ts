/**
 * Child spans per stage, derived from the pipeline's stage timings.
 *
 * The pipeline adds each stage's time to `ctx.timings` (milliseconds, summed
 * over phases). The audit stage runs first in every phase, so at the start of
 * each phase it notes the time and a copy of the timings; at the start of the
 * next phase (or at close) the difference is what each stage spent in the
 * phase just ended. Stages run one after another in pipeline order, so each
 * stage's work starts where the previous stage's ended.
 *
 * One slice per stage and direction: the request phases (headers, body,
 * trailers) merge into one `request` slice, the response phases (and every
 * chunk of a streamed body) into one `response` slice, from the first run to
 * the last, with the busy time, the run count and the phases as attributes.
 * The audit stage's own time is left out (it is on the request span).
 *
 * Exact to the pipeline's own measurement; positions within a phase assume
 * the order in which stages first appeared in `ctx.timings` (pipeline order
 * for every stage that has a request phase).
 */
import type { Phase } from '../pipeline/stage.ts'

export type Direction = 'request' | 'response'

export interface StageSlice {
  readonly stage: string
  readonly direction: Direction
  /** The phases merged into the slice, in the order first seen. */
  readonly phases: Phase[]
  /** Monotonic clock (process.hrtime.bigint) nanoseconds. */
  readonly startNs: bigint
  endNs: bigint
  busyMs: number
  calls: number
}

/** Upper bound on distinct (stage, phase) slices kept per request. */
const MAX_SLICES = 128

export class Timeline {
  readonly #skip: string | undefined
  readonly #slicing: boolean
  #current: { phase: Phase; t0: bigint; snapshot: Map<string, number> } | undefined
  readonly #slices = new Map<string, StageSlice>()
  #phases = new Set<Phase>()

  /**
   * `skip`: a stage whose time is not sliced (the audit stage itself).
   * `slicing: false` keeps only which phases were seen: no snapshot of the
   * timings per phase or chunk, no slices (stage spans are off).
   */
  constructor(skip?: string, opts: { slicing?: boolean } = {}) {
    this.#skip = skip
    this.#slicing = opts.slicing ?? true
  }

  /** A phase starts now (called by the audit stage, first in the phase). */
  mark(phase: Phase, timings: ReadonlyMap<string, number>, now: bigint): void {
    this.#phases.add(phase)
    if (!this.#slicing) return
    this.settle(timings)
    this.#current = { phase, t0: now, snapshot: new Map(timings) }
  }

  /** Attributes the time spent since the last mark to the stages that spent it. */
  settle(timings: ReadonlyMap<string, number>): void {
    const cur = this.#current
    if (!cur) return
    this.#current = undefined
    let cursor = cur.t0
    for (const [stage, total] of timings) {
      const delta = total - (cur.snapshot.get(stage) ?? 0)
      if (!(delta > 0)) continue
      const start = cursor
      const end = cursor + BigInt(Math.round(delta * 1e6))
      cursor = end
      if (stage === this.#skip) continue
      const direction: Direction = cur.phase.startsWith('request') ? 'request' : 'response'
      const key = `${stage}\u0000${direction}`
      const s = this.#slices.get(key)
      if (s) {
        s.endNs = end
        s.busyMs += delta
        s.calls++
        if (!s.phases.includes(cur.phase)) s.phases.push(cur.phase)
      } else if (this.#slices.size < MAX_SLICES) {
        this.#slices.set(key, { stage, direction, phases: [cur.phase], startNs: start, endNs: end, busyMs: delta, calls: 1 })
      }
    }
  }

  /** True once the phase has started for this request. */
  saw(phase: Phase): boolean {
    return this.#phases.has(phase)
  }

  /** The slices, in start order. */
  slices(): StageSlice[] {
    return [...this.#slices.values()].sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0))
  }
}
