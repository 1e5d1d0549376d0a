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

/** A slice while it is being built: times as nanoseconds after the timeline's first mark. */
interface OpenSlice {
  readonly stage: string
  readonly direction: Direction
  readonly phases: Phase[]
  readonly start: number
  end: number
  busyMs: number
  calls: number
}

export class Timeline {
  readonly #skip: string | undefined
  readonly #slicing: boolean
  /** The monotonic time of the first mark: slice times are kept as offsets from it (plain numbers, exact for 104 days). */
  #base: bigint | undefined
  /** The phase under way: its start offset and each stage's total when it started, in `ctx.timings` order. */
  #phase: Phase | undefined
  #t0 = 0
  #names: string[] = []
  #totals: number[] = []
  /** One slice per stage and direction, in creation order. */
  readonly #request = new Map<string, OpenSlice>()
  readonly #response = new Map<string, OpenSlice>()
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
    this.#base ??= now
    this.#phase = phase
    this.#t0 = Number(now - this.#base)
    let i = 0
    for (const [stage, total] of timings) {
      this.#names[i] = stage
      this.#totals[i++] = total
    }
    this.#names.length = i
    this.#totals.length = i
  }

  /** Attributes the time spent since the last mark to the stages that spent it. */
  settle(timings: ReadonlyMap<string, number>): void {
    const phase = this.#phase
    if (phase === undefined) return
    this.#phase = undefined
    const names = this.#names
    const totals = this.#totals
    const slices = phase.startsWith('request') ? this.#request : this.#response
    const direction: Direction = slices === this.#request ? 'request' : 'response'
    let cursor = this.#t0
    let i = 0
    for (const [stage, total] of timings) {
      // Stages keep their place in ctx.timings: the one at the same position is the usual match.
      const k = names[i] === stage ? i : names.indexOf(stage)
      i++
      const delta = total - (k >= 0 ? totals[k]! : 0)
      if (!(delta > 0)) continue
      const start = cursor
      const end = cursor + Math.round(delta * 1e6)
      cursor = end
      if (stage === this.#skip) continue
      const s = slices.get(stage)
      if (s) {
        s.end = end
        s.busyMs += delta
        s.calls++
        if (!s.phases.includes(phase)) s.phases.push(phase)
      } else if (this.#request.size + this.#response.size < MAX_SLICES) {
        slices.set(stage, { stage, direction, phases: [phase], start, end, busyMs: delta, calls: 1 })
      }
    }
  }

  /** True once the phase has started for this request. */
  saw(phase: Phase): boolean {
    return this.#phases.has(phase)
  }

  /** The slices, in start order. */
  slices(): StageSlice[] {
    const base = this.#base ?? 0n
    const all: OpenSlice[] = [...this.#request.values(), ...this.#response.values()]
    // A stable sort: slices that start together keep their creation order.
    all.sort((a, b) => a.start - b.start)
    return all.map((s) => ({ stage: s.stage, direction: s.direction, phases: s.phases, startNs: base + BigInt(s.start), endNs: base + BigInt(s.end), busyMs: s.busyMs, calls: s.calls }))
  }
}
