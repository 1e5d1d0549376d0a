/**
 * The quota stage: reserve, then settle.
 *
 * Request body: every rule matching the request (by identity, team,
 * namespace, user, provider, model, operation) must admit it. The worst case
 * is reserved in one step on every counter: one request, the estimated input
 * tokens plus the output budget (estimate.ts), one slot in flight. A rule
 * that would be exceeded refuses the request (MG_QUOTA_EXCEEDED, 429, with
 * Retry-After and the IETF RateLimit fields naming the rule) before anything
 * reaches the provider.
 *
 * Response: a streamed answer is followed event by event; its text is
 * counted, and when it passes the output reserved, more is reserved; when a
 * rule has no more to give, the stream ends with an SSE error event in the
 * provider's format. For an OpenAI chat stream whose caller did not ask for
 * usage, the stage asks for it (`stream_options.include_usage`) and hides the
 * usage chunk, and the `usage: null` the provider then adds to every chunk,
 * from the caller.
 *
 * Close (every way a stream ends): the reservation is settled with the
 * provider's usage; without one, at what the stream produced (a cut or
 * abandoned stream, never zero) or at the reservation (an answer that
 * reported nothing); nothing when modelgate refused the request after the
 * reservation. Slots in flight are released. A store that cannot be reached
 * follows `quotas.onStoreError`: refuse (MG_QUOTA_UNAVAILABLE) or count
 * against this replica's own share of each limit.
 */
import { randomUUID } from 'node:crypto'
import type { QuotasConfig } from '../config/sections/quotas.ts'
import { ERRORS, errorDocument, GateError } from '../errors.ts'
import { addRequestBodyEdit } from '../inspection/edits.ts'
import type { Logger } from '../log.ts'
import type { QuotaOutcome, RequestContext } from '../pipeline/context.ts'
import type { BodyChunk, Stage, StreamOutcome } from '../pipeline/stage.ts'
import { apiFor, streamedText, type StreamUsageOption } from '../providers/apis/index.ts'
import type { ParsedRequest, TokenUsage } from '../providers/types.ts'
import { errorEvent, serializeEvent, SseFramer, type SseEvent } from '../redaction/sse.ts'
import { compileEstimator, type TextCounter } from './estimate.ts'
import { countO200k } from './measure.ts'
import { admittedRateLimitHeaders, rateLimitHeaders } from './headers.ts'
import { MemoryStore } from './memory.ts'
import { compileRule, counterKey, type CompiledRule, type CounterKind, type QuotaFacts } from './rules.ts'
import { StoreUnavailableError, type ReserveItem, type ReserveResult, type SettleItem, type StateStore } from './store.ts'

const HELD = Symbol('quota.held')
const CLOSED = Symbol('quota.closed')

/** The usage of a request whose response reported none. */
const NO_USAGE: TokenUsage = Object.freeze({ input: undefined, output: undefined })

export interface QuotaStageOptions {
  readonly config: QuotasConfig
  /** The configured store (memory or Redis). */
  readonly store: StateStore
  /** The caller's teams (from the policy set's entities). */
  readonly teamsOf: (spiffeId: string, namespace: string | undefined) => ReadonlySet<string>
  readonly logger: Logger
  /** Told about every settle that could not reach the store (metrics). */
  readonly onStoreError?: (phase: 'reserve' | 'settle') => void
}

interface Counter {
  readonly rule: CompiledRule
  readonly kind: CounterKind
  readonly item: ReserveItem
}

/** One request's reservation. */
interface Held {
  readonly id: string
  readonly store: StateStore | MemoryStore
  readonly storeName: 'memory' | 'redis' | 'local'
  /** Its counters, each with what it is charged so far (extensions included). */
  counters: readonly Counter[]
  readonly input: number
  /** Output tokens reserved so far (the budget plus extensions). */
  output: number
  readonly counter: TextCounter
  /** Hide the usage this stage asked for: the API's option that asked. */
  hideUsage: StreamUsageOption | undefined
  /** The RateLimit fields the answer carries (quotas.rateLimitHeaders), from the counters after the charge. */
  readonly headers: Record<string, string> | undefined
  framer: SseFramer | undefined
  settled: boolean
  outcome: QuotaOutcome
}

export interface QuotaStage extends Stage {
  /** True when some rule limits tokens (bodies are then measured). */
  readonly measuresTokens: boolean
}

export function createQuotaStage(opts: QuotaStageOptions): QuotaStage {
  const { config, store, logger } = opts
  const rules = config.rules.map(compileRule)
  const estimator = compileEstimator(config.estimation)
  const ttlMs = config.maxRequestSeconds * 1000
  const local = config.onStoreError === 'local' ? new MemoryStore() : undefined
  const measuresTokens = rules.some((r) => r.tokens)
  // The tokenizer's ranks load now, not with the first request.
  if (measuresTokens) countO200k('warm')

  const factsOf = (ctx: RequestContext, req: ParsedRequest): QuotaFacts => {
    const { workload: id, user } = ctx.need('caller')
    return {
      identity: id.spiffeId,
      teams: [...opts.teamsOf(id.spiffeId, id.namespace)],
      namespace: id.namespace,
      user: user ? { subject: user.subject, id: `${user.issuer}#${user.subject}` } : undefined,
      provider: req.providerName,
      model: req.model,
      operation: req.operation,
    }
  }

  const costOf = (kind: CounterKind, input: number, output: number): number => (kind === 'requests' || kind === 'concurrent' ? 1 : kind === 'tokens' ? input + output : kind === 'input' ? input : output)

  /** The same items, each limit cut to this replica's share (at least 1). */
  const localItems = (items: readonly ReserveItem[]): ReserveItem[] => items.map((i) => ({ ...i, limit: Math.max(1, Math.floor(i.limit * config.localShare)) }))

  const remainingOf = (counters: readonly Counter[], result: ReserveResult): Record<string, number> => {
    const out: Record<string, number> = {}
    counters.forEach((c, i) => {
      const r = result.counters[i]!.remaining
      out[c.rule.name] = Math.min(out[c.rule.name] ?? Infinity, r)
    })
    return out
  }

  const refuse = (ctx: RequestContext, counters: readonly Counter[], result: Extract<ReserveResult, { ok: false }>, outcome: QuotaOutcome): never => {
    const c = counters[result.refused]!
    const state = result.counters[result.refused]!
    outcome.decidingRule = c.rule.name
    ctx.put('quota', outcome)
    const retryS = Math.max(1, Math.ceil((result.retryAfterMs ?? (c.rule.windowMs || 1000)) / 1000))
    const tooLarge = result.retryAfterMs === undefined
    throw new GateError('MG_QUOTA_EXCEEDED', {
      details: { rule: c.rule.name, retry_after: retryS, ...(tooLarge ? { problem: 'the request alone is larger than the limit' } : {}) },
      internal: `quota rule "${c.rule.name}" (${c.kind}, limit ${c.item.limit}) cannot admit ${c.item.cost}; ${state.remaining} left`,
      headers: rateLimitHeaders(c.rule, c.kind, c.item.limit, state.remaining, retryS),
    })
  }

  /** Reserves on the configured store, or (`local`) on this replica's share when it cannot be reached. */
  const reserve = (counters: readonly Counter[], id: string, outcome: QuotaOutcome): { result: ReserveResult; store: StateStore; storeName: Held['storeName'] } | Promise<{ result: ReserveResult; store: StateStore; storeName: Held['storeName'] }> => {
    const items = counters.map((c) => c.item)
    if (store instanceof MemoryStore) return { result: store.reserveNow(items, { id, ttlMs }), store, storeName: 'memory' }
    return store.reserve(items, { id, ttlMs }).then(
      (result) => ({ result, store, storeName: store.kind }),
      (err: unknown) => {
        if (!(err instanceof StoreUnavailableError)) throw err
        opts.onStoreError?.('reserve')
        outcome.storeError = err.message
        if (!local) {
          outcome.store = store.kind
          throw new GateError('MG_QUOTA_UNAVAILABLE', { internal: `quota store ${store.kind} unreachable: ${err.message}`, headers: { 'retry-after': '1' } })
        }
        logger.warn('quota store unreachable; counting against this replica\'s share', { store: store.kind, error: err.message })
        return { result: local.reserveNow(localItems(items), { id, ttlMs }), store: local, storeName: 'local' as const }
      },
    )
  }

  const held = (ctx: RequestContext): Held | undefined => ctx.local<Held | undefined>(HELD, () => undefined)

  /** Settles a request once: the correction of every counter, the release of its slots. */
  const settle = (ctx: RequestContext, h: Held, outcome: StreamOutcome): void => {
    if (h.settled) return
    h.settled = true
    const usage = ctx.out.reply?.usage ?? NO_USAGE
    const reachedProvider = ctx.responseStatus !== undefined
    const streamed = h.counter.tokens
    const produced = Math.max(1, streamed)
    let input = h.input
    let output = h.output
    let by: NonNullable<QuotaOutcome['settledBy']>
    if (!reachedProvider && ctx.denial) {
      // modelgate refused the request after the reservation: nothing went out.
      input = 0
      output = 0
      by = 'released'
    } else if (h.outcome.streamCut || outcome.kind !== 'completed' || (ctx.responseStreaming && ctx.denial)) {
      // Cut, abandoned or ended by a failure: what was produced, never zero.
      input = usage.input ?? h.input
      output = usage.output !== undefined ? Math.max(usage.output, produced) : produced
      by = usage.output !== undefined ? 'usage' : 'streamed'
    } else if (usage.input !== undefined || usage.output !== undefined) {
      input = usage.input ?? h.input
      output = usage.output ?? (streamed > 0 ? streamed : h.output)
      by = 'usage'
    } else {
      by = 'reservation'
    }
    const items: SettleItem[] = []
    for (const c of h.counters) {
      const now = costOf(c.kind, input, output)
      const delta = c.kind === 'concurrent' || c.kind === 'requests' ? 0 : now - c.item.cost
      if (c.kind === 'concurrent' || delta !== 0) items.push({ key: c.item.key, algorithm: c.item.algorithm, limit: c.item.limit, windowMs: c.item.windowMs, delta })
      if (delta !== 0) h.outcome.remaining[c.rule.name] = Math.max(0, (h.outcome.remaining[c.rule.name] ?? 0) - delta)
    }
    // Token amounts mean something only when a rule counts tokens.
    if (h.counters.some((c) => c.kind === 'tokens' || c.kind === 'input' || c.kind === 'output')) h.outcome.settledTokens = input + output
    h.outcome.settledBy = by
    if (items.length === 0) return
    const target = h.store
    if (target instanceof MemoryStore) {
      target.settleNow(items, h.id)
      return
    }
    target.settle(items, h.id).catch((err: unknown) => {
      opts.onStoreError?.('settle')
      // The reservation stays charged at its worst case; slots in flight expire after maxRequestSeconds.
      logger.warn('quota settle failed; the reservation stays charged', { request_id: ctx.id, store: target.kind, error: (err as Error).message })
    })
  }

  /** More output for a stream that passed what it reserved: a block, or at least what it needs now. Undefined: admitted. */
  const extend = async (h: Held, need: number): Promise<{ counter: Counter | undefined; code: 'MG_QUOTA_EXCEEDED' | 'MG_QUOTA_UNAVAILABLE' } | undefined> => {
    const tokenCounters = h.counters.filter((c) => c.kind === 'tokens' || c.kind === 'output')
    if (tokenCounters.length === 0) {
      h.output += need
      return undefined
    }
    const block = Math.max(need, 64, Math.ceil(h.output / 4))
    for (const amount of block > need ? [block, need] : [need]) {
      const items = tokenCounters.map((c) => ({ ...c.item, cost: amount }))
      let result: ReserveResult
      try {
        result = h.store instanceof MemoryStore ? h.store.reserveNow(items, { id: h.id, ttlMs }) : await h.store.reserve(items, { id: h.id, ttlMs })
      } catch (err) {
        if (!(err instanceof StoreUnavailableError)) throw err
        opts.onStoreError?.('reserve')
        h.outcome.storeError = err.message
        if (!local) return { counter: undefined, code: 'MG_QUOTA_UNAVAILABLE' }
        result = local.reserveNow(localItems(items), { id: h.id, ttlMs })
      }
      if (result.ok) {
        h.output += amount
        // The extension is part of the reservation: settling corrects it with the rest.
        h.counters = h.counters.map((c) => (c.kind === 'tokens' || c.kind === 'output' ? { ...c, item: { ...c.item, cost: c.item.cost + amount } } : c))
        h.outcome.reservedTokens = (h.outcome.reservedTokens ?? 0) + amount
        tokenCounters.forEach((c, i) => (h.outcome.remaining[c.rule.name] = Math.min(h.outcome.remaining[c.rule.name] ?? Infinity, result.counters[i]!.remaining)))
        return undefined
      }
      if (amount === need) return { counter: tokenCounters[result.refused], code: 'MG_QUOTA_EXCEEDED' }
    }
    return { counter: tokenCounters[0], code: 'MG_QUOTA_EXCEEDED' }
  }

  /** Ends the stream with an SSE error event after the events that fit. */
  const cut = (ctx: RequestContext, chunk: BodyChunk, h: Held, passed: Buffer[], c: Counter | undefined, code: 'MG_QUOTA_EXCEEDED' | 'MG_QUOTA_UNAVAILABLE'): void => {
    const { status, message } = ERRORS[code]
    const details = c ? { rule: c.rule.name } : {}
    chunk.data = Buffer.concat([...passed, errorEvent(errorDocument(ctx.dialect, { code, status, message, details }, { requestId: ctx.id, decisionId: ctx.out.decision?.decisionId }))])
    ctx.responseTerminated = true
    ctx.denial = new GateError(code, { details, internal: c ? `stream passed the token budget of quota rule "${c.rule.name}"` : 'quota store unreachable while the stream needed more budget' })
    h.outcome.streamCut = true
    if (c) h.outcome.decidingRule = c.rule.name
    h.framer = undefined
  }

  /** The event as the caller gets it: dropped (the usage chunk it did not ask for), without `usage: null`, or as it came. */
  const passOn = (ev: SseEvent, hideUsage: StreamUsageOption | undefined, parsed: unknown): Buffer | undefined => {
    if (hideUsage && parsed !== undefined && typeof parsed === 'object' && parsed !== null) {
      const shown = hideUsage.withoutUsage(parsed as Record<string, unknown>)
      if (shown === undefined) return undefined
      if (shown !== parsed) return serializeEvent(ev, JSON.stringify(shown))
    }
    return serializeEvent(ev)
  }

  return {
    name: 'quota',
    produces: ['quota'],
    consumes: ['caller', 'request', 'decision', 'reply'],
    measuresTokens,

    requestBody(ctx) {
      const req = ctx.out.request
      if (!req || !ctx.out.caller?.workload || rules.length === 0) return
      const facts = factsOf(ctx, req)
      const matched = rules.filter((r) => r.matches(facts))
      if (matched.length === 0) return
      const input = matched.some((r) => r.tokens) ? estimator.input(req) : 0
      const output = matched.some((r) => r.tokens) ? estimator.outputReserve(req) : 0
      const counters: Counter[] = []
      for (const rule of matched) {
        const partition = rule.partition(facts)
        for (const rc of rule.counters) {
          counters.push({ rule, kind: rc.kind, item: { key: counterKey(rule, rc.kind, partition), algorithm: rule.algorithm, limit: rc.limit, windowMs: rule.windowMs, cost: costOf(rc.kind, input, output) } })
        }
      }
      const id = randomUUID()
      const outcome: QuotaOutcome = { rules: matched.map((r) => r.name), remaining: {}, ...(matched.some((r) => r.tokens) ? { reservedTokens: input + output } : {}) }
      const done = (r: { result: ReserveResult; store: StateStore; storeName: Held['storeName'] }): void => {
        outcome.store = r.storeName
        outcome.remaining = remainingOf(counters, r.result)
        if (!r.result.ok) return refuse(ctx, counters, r.result, outcome)
        ctx.put('quota', outcome)
        const headers = config.rateLimitHeaders ? admittedRateLimitHeaders(counters.map((c, i) => ({ rule: c.rule, kind: c.kind, limit: c.item.limit, ...r.result.counters[i]! }))) : undefined
        const h: Held = { id, store: r.store, storeName: r.storeName, counters, input, output, counter: estimator.textCounter(req), hideUsage: undefined, headers, framer: undefined, settled: false, outcome }
        ctx.local(HELD, () => h)
        // The stream ended while the store answered (the phase ran out of time): nothing went out, give it all back.
        if (ctx.local(CLOSED, () => ({ closed: false })).closed) return settle(ctx, h, { kind: 'cancelled' })
        // No usage chunk asked for: ask for it, and hide it from the caller.
        const ask = req.streamUsage && !req.streamUsage.asked ? req.streamUsage.ask : undefined
        const option = ask !== undefined && matched.some((r) => r.tokens) ? apiFor(req.api).streamUsage : undefined
        if (option && ask !== undefined) {
          addRequestBodyEdit(ctx, ask)
          h.hideUsage = option
        }
      }
      const r = reserve(counters, id, outcome)
      if (!('then' in r)) return done(r)
      return r.then(done, (err: unknown) => {
        ctx.put('quota', outcome)
        throw err
      })
    },

    responseHeaders(ctx) {
      const h = held(ctx)
      if (h?.headers) for (const [name, value] of Object.entries(h.headers)) ctx.responseHeaderChanges.setHeader(name, value)
      if (h && ctx.responseStreaming && (h.hideUsage || h.counters.some((c) => c.kind === 'tokens' || c.kind === 'output'))) h.framer = new SseFramer()
    },

    responseBody(ctx, chunk) {
      const h = held(ctx)
      if (!h || !h.framer || ctx.responseTerminated) return
      const events = h.framer.push(chunk.data)
      if (chunk.end) {
        const rest = h.framer.flush()
        if (rest) events.push(rest)
      }
      const passed: Buffer[] = []
      const run = (from: number): void | Promise<void> => {
        for (let i = from; i < events.length; i++) {
          const ev = events[i]!
          let parsed: unknown
          if (ev.data !== undefined && ev.data !== '[DONE]' && ev.data.length <= 256 * 1024) {
            try {
              parsed = JSON.parse(ev.data)
            } catch {
              parsed = undefined
            }
          }
          const text = streamedText(parsed)
          if (text) h.counter.add(text)
          if (h.counter.tokens > h.output) {
            return extend(h, h.counter.tokens - h.output).then((refusedBy) => {
              if (refusedBy) return cut(ctx, chunk, h, passed, refusedBy.counter, refusedBy.code)
              const out = passOn(ev, h.hideUsage, parsed)
              if (out) passed.push(out)
              return run(i + 1)
            })
          }
          const out = passOn(ev, h.hideUsage, parsed)
          if (out) passed.push(out)
        }
        chunk.data = passed.length === 1 ? passed[0]! : Buffer.concat(passed)
      }
      return run(0)
    },

    close(ctx, outcome) {
      ctx.local(CLOSED, () => ({ closed: false })).closed = true
      const h = held(ctx)
      if (h) settle(ctx, h, outcome)
    },
  }
}
