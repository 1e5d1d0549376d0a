import { GateError, toGateError } from '../errors.ts'
import type { RequestContext } from './context.ts'
import { checkFlow, type OutputOwners } from './outputs.ts'
import type { BodyChunk, Phase, Stage, StreamOutcome } from './stage.ts'

type PhaseFn = (ctx: RequestContext, chunk?: BodyChunk) => void | Promise<void>

export interface PipelineOptions {
  /**
   * Deadline for one phase across all stages, in milliseconds. Keep it below
   * Envoy's message_timeout so the caller gets modelgate's own error body.
   */
  readonly phaseTimeoutMs: number
  /** Observes every stage failure (already converted to a GateError). */
  readonly onStageError?: (stage: string, phase: Phase, err: GateError) => void
}

/**
 * The ordered stages, with the per-phase lists computed once. `run` calls the
 * stages of one phase in order and throws the first denial; `close` tells every
 * stage that the stream ended.
 */
export class Pipeline {
  readonly stages: readonly Stage[]
  readonly #byPhase: ReadonlyMap<Phase, readonly { name: string; fn: PhaseFn }[]>
  readonly #options: PipelineOptions
  /** Which stages may write each output (pipeline/outputs.ts). */
  readonly owners: OutputOwners

  constructor(stages: readonly Stage[], options: PipelineOptions) {
    const names = new Set<string>()
    for (const s of stages) {
      if (names.has(s.name)) throw new Error(`pipeline: two stages are named "${s.name}"`)
      names.add(s.name)
    }
    const flow = checkFlow(stages)
    if (flow.problems.length > 0) throw new Error(`pipeline: ${flow.problems.join('; ')}`)
    this.owners = flow.owners
    this.stages = Object.freeze([...stages])
    this.#options = options
    const byPhase = new Map<Phase, { name: string; fn: PhaseFn }[]>()
    const phases: Phase[] = ['requestHeaders', 'requestBody', 'requestTrailers', 'responseHeaders', 'responseBody', 'responseTrailers']
    for (const phase of phases) {
      const list: { name: string; fn: PhaseFn }[] = []
      for (const s of stages) {
        const m = s[phase] as PhaseFn | undefined
        if (typeof m === 'function') list.push({ name: s.name, fn: m.bind(s) })
      }
      byPhase.set(phase, list)
    }
    this.#byPhase = byPhase
  }

  /** True when some stage wants to see this phase. */
  has(phase: Phase): boolean {
    return (this.#byPhase.get(phase)?.length ?? 0) > 0
  }

  /**
   * Runs one phase through every stage, in order. Throws a GateError to deny.
   * A response body chunk goes no further than the stage that ends the
   * response (`ctx.responseTerminated`): its error event is the chunk's last word.
   *
   * The phase deadline holds for synchronous and asynchronous work alike: a
   * stage that returns a promise races a timer (armed only then), and after
   * every stage the elapsed time is checked, so a synchronous overrun also
   * ends in MG_TIMEOUT instead of a late answer. A phase whose stages are all
   * synchronous allocates no timer.
   */
  async run(phase: Phase, ctx: RequestContext, chunk?: BodyChunk): Promise<void> {
    const list = this.#byPhase.get(phase)
    if (!list || list.length === 0) return
    const budget = this.#options.phaseTimeoutMs
    const t0 = performance.now()
    ctx.bindOwners(this.owners)
    // One clock reading per stage: a stage's end is the next one's start.
    let s0 = t0
    for (const { name, fn } of list) {
      if (ctx.idleStages !== undefined && ctx.idleStages.has(name)) continue
      let end = s0
      ctx.stage = name
      try {
        const r = fn(ctx, chunk)
        if (r !== undefined && typeof (r as Promise<void>).then === 'function') await this.#withinDeadline(r as Promise<void>, phase, t0 + budget - performance.now())
      } catch (err) {
        if (err instanceof DeadlineError) throw err.gate
        const ge = toGateError(err)
        this.#options.onStageError?.(name, phase, ge)
        throw ge
      } finally {
        end = performance.now()
        ctx.timings.set(name, (ctx.timings.get(name) ?? 0) + (end - s0))
        s0 = end
      }
      if (end - t0 > budget) throw this.#timeout(phase, name)
      // A stage that answers the exchange itself: the stages after it never see it.
      if (ctx.answeredBy === name) return
      // A stage that ended the response wrote its last bytes: later stages do not rewrite them.
      if (phase === 'responseBody' && ctx.responseTerminated) return
    }
  }

  #timeout(phase: Phase, stage?: string): GateError {
    const by = stage === undefined ? '' : ` (${stage} finished after the deadline)`
    return new GateError('MG_TIMEOUT', { internal: `phase ${phase} exceeded ${this.#options.phaseTimeoutMs} ms${by}` })
  }

  /** Awaits a stage's promise, or rejects with a DeadlineError once the phase's time is up. */
  #withinDeadline(work: Promise<void>, phase: Phase, remainingMs: number): Promise<void> {
    if (remainingMs <= 0) {
      work.catch(() => {}) // its outcome no longer matters; never an unhandled rejection
      return Promise.reject(new DeadlineError(this.#timeout(phase)))
    }
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        work.catch(() => {})
        reject(new DeadlineError(this.#timeout(phase)))
      }, remainingMs)
      timer.unref()
      work.then(
        () => {
          clearTimeout(timer)
          resolve()
        },
        (err: unknown) => {
          clearTimeout(timer)
          reject(err)
        },
      )
    })
  }

  /** Tells every stage the stream ended. Stage failures here are swallowed (and reported). */
  close(ctx: RequestContext, outcome: StreamOutcome): void {
    for (let i = this.stages.length - 1; i >= 0; i--) {
      const s = this.stages[i]!
      if (!s.close) continue
      ctx.stage = s.name
      try {
        s.close(ctx, outcome)
      } catch (err) {
        this.#options.onStageError?.(s.name, 'responseTrailers', toGateError(err))
      }
    }
  }
}

/** The phase deadline passed while a stage was awaited: not a stage failure. */
class DeadlineError extends Error {
  readonly gate: GateError
  constructor(gate: GateError) {
    super(gate.message)
    this.gate = gate
  }
}
