import t from 'tap'
import { GateError } from '../../../src/errors.ts'
import { RequestContext } from '../../../src/pipeline/context.ts'
import { Pipeline } from '../../../src/pipeline/pipeline.ts'
import { PHASES, type BodyChunk, type Phase, type Stage, type StreamOutcome } from '../../../src/pipeline/stage.ts'

/** A stage that records every call into `log` as "name:phase". */
function recorder(name: string, log: string[], extra: Partial<Stage> = {}): Stage {
  const stage: Stage = { name, ...extra }
  for (const phase of PHASES) {
    if (phase in extra) continue
    ;(stage as unknown as Record<Phase, () => void>)[phase] = () => {
      log.push(`${name}:${phase}`)
    }
  }
  if (!extra.close) stage.close = (_ctx, outcome) => void log.push(`${name}:close:${outcome.kind}`)
  return stage
}

async function rejection(p: Promise<unknown>): Promise<GateError | undefined> {
  // The deadline timer is unref'd (the gRPC server keeps a real process alive); keep this one alive meanwhile.
  const keepAlive = setInterval(() => {}, 1000)
  try {
    await p
    return undefined
  } catch (err) {
    return err as GateError
  } finally {
    clearInterval(keepAlive)
  }
}

t.test('stages run in the given order for every phase', async (t) => {
  const log: string[] = []
  const p = new Pipeline([recorder('a', log), recorder('b', log), recorder('c', log)], { phaseTimeoutMs: 1000 })
  const ctx = new RequestContext()
  for (const phase of PHASES) await p.run(phase, ctx, phase === 'responseBody' ? { data: Buffer.alloc(0), end: true } : undefined)
  t.same(
    log,
    PHASES.flatMap((ph) => [`a:${ph}`, `b:${ph}`, `c:${ph}`]),
  )
})

t.test('only stages that define a phase are called for it, and has() says whether any does', async (t) => {
  const log: string[] = []
  const a: Stage = { name: 'a', requestHeaders: () => void log.push('a') }
  const b: Stage = { name: 'b', requestBody: () => void log.push('b') }
  const p = new Pipeline([a, b], { phaseTimeoutMs: 1000 })
  t.equal(p.has('requestHeaders'), true)
  t.equal(p.has('requestBody'), true)
  t.equal(p.has('responseBody'), false)
  await p.run('requestHeaders', new RequestContext())
  await p.run('responseBody', new RequestContext(), { data: Buffer.alloc(0), end: true })
  t.same(log, ['a'])
  t.same(p.stages.map((s) => s.name), ['a', 'b'])
  t.ok(Object.isFrozen(p.stages))
})

t.test('stage methods run with the stage as `this`, sync or async', async (t) => {
  const seen: string[] = []
  const stage = {
    name: 'self',
    label: 'mine',
    requestHeaders(this: { label: string }) {
      seen.push(this.label)
    },
    async requestBody(this: { label: string }) {
      await new Promise((r) => setImmediate(r))
      seen.push(this.label + '-async')
    },
  }
  const p = new Pipeline([stage], { phaseTimeoutMs: 1000 })
  await p.run('requestHeaders', new RequestContext())
  await p.run('requestBody', new RequestContext())
  t.same(seen, ['mine', 'mine-async'])
})

t.test('the response body chunk is shared along the stages, so a stage can replace its data', async (t) => {
  const upper: Stage = { name: 'upper', responseBody: (_c, chunk) => void (chunk.data = Buffer.from(chunk.data.toString().toUpperCase())) }
  const seen: string[] = []
  const after: Stage = { name: 'after', responseBody: (_c, chunk) => void seen.push(chunk.data.toString()) }
  const chunk: BodyChunk = { data: Buffer.from('hello'), end: false }
  await new Pipeline([upper, after], { phaseTimeoutMs: 1000 }).run('responseBody', new RequestContext(), chunk)
  t.same(seen, ['HELLO'])
  t.equal(chunk.data.toString(), 'HELLO')
})

t.test('a stage that ends the response writes the chunk\'s last word: later stages do not see the chunk', async (t) => {
  const log: string[] = []
  const ender = recorder('ender', log, {
    responseBody(ctx, chunk) {
      log.push('ender:responseBody')
      chunk.data = Buffer.from('event: error\ndata: {}\n\n')
      ctx.responseTerminated = true
    },
  })
  const p = new Pipeline([recorder('a', log), ender, recorder('b', log)], { phaseTimeoutMs: 1000 })
  const ctx = new RequestContext()
  const chunk: BodyChunk = { data: Buffer.from('data: x\n\n'), end: false }
  await p.run('responseBody', ctx, chunk)
  t.same(log, ['a:responseBody', 'ender:responseBody'])
  t.equal(chunk.data.toString(), 'event: error\ndata: {}\n\n')
  await p.run('responseTrailers', ctx)
  t.same(log.slice(2), ['a:responseTrailers', 'ender:responseTrailers', 'b:responseTrailers'], 'other phases still reach every stage')
})

t.test('the first denial stops the phase and is thrown as it is', async (t) => {
  const log: string[] = []
  const denial = new GateError('MG_POLICY_DENIED', { internal: 'no' })
  const errors: [string, Phase, string][] = []
  const p = new Pipeline(
    [
      recorder('a', log),
      recorder('b', log, {
        requestBody: () => {
          throw denial
        },
      }),
      recorder('c', log),
    ],
    { phaseTimeoutMs: 1000, onStageError: (s, ph, e) => void errors.push([s, ph, e.code]) },
  )
  const err = await rejection(p.run('requestBody', new RequestContext()))
  t.equal(err, denial)
  t.same(log, ['a:requestBody'], 'c never runs')
  t.same(errors, [['b', 'requestBody', 'MG_POLICY_DENIED']])
})

t.test('other exceptions become MG_INTERNAL (fail closed)', async (t) => {
  const cases: [name: string, fn: () => unknown, internal: string][] = [
    [
      'a thrown Error',
      () => {
        throw new Error('boom')
      },
      'Error: boom',
    ],
    ['a rejected promise', () => Promise.reject(new TypeError('bad type')), 'TypeError: bad type'],
    [
      'a thrown string',
      () => {
        throw 'just a string'
      },
      'just a string',
    ],
  ]
  for (const [name, fn, internal] of cases) {
    const p = new Pipeline([{ name: 'x', requestHeaders: fn as Stage['requestHeaders'] }], { phaseTimeoutMs: 1000 })
    const err = await rejection(p.run('requestHeaders', new RequestContext()))
    t.ok(err instanceof GateError, name)
    t.equal(err?.code, 'MG_INTERNAL', name)
    t.equal(err?.status, 500, name)
    t.equal(err?.internal, internal, name)
  }
})

t.test('a phase that passes its deadline is MG_TIMEOUT, and later stages do not run', async (t) => {
  const log: string[] = []
  const errors: string[] = []
  const p = new Pipeline(
    [
      { name: 'hang', requestHeaders: () => new Promise<void>(() => {}) },
      { name: 'after', requestHeaders: () => void log.push('after') },
    ],
    { phaseTimeoutMs: 30, onStageError: (s) => void errors.push(s) },
  )
  const err = await rejection(p.run('requestHeaders', new RequestContext()))
  t.equal(err?.code, 'MG_TIMEOUT')
  t.equal(err?.status, 504)
  t.equal(err?.internal, 'phase requestHeaders exceeded 30 ms')
  t.same(log, [])
  t.same(errors, [], 'the deadline is not a stage error')
})

t.test('the deadline covers the whole phase, not each stage', async (t) => {
  const slow = (name: string): Stage => ({ name, requestBody: () => new Promise<void>((r) => setTimeout(r, 25)) })
  const p = new Pipeline([slow('a'), slow('b'), slow('c'), slow('d')], { phaseTimeoutMs: 40 })
  t.equal((await rejection(p.run('requestBody', new RequestContext())))?.code, 'MG_TIMEOUT')
})

t.test('a stage that fails after its deadline passed does not cause an unhandled rejection', async (t) => {
  const p = new Pipeline([{ name: 'late', requestHeaders: () => new Promise<void>((_, reject) => setTimeout(() => reject(new Error('late')), 40)) }], { phaseTimeoutMs: 10 })
  const unhandled: unknown[] = []
  const onUnhandled = (r: unknown) => void unhandled.push(r)
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => void process.off('unhandledRejection', onUnhandled))
  t.equal((await rejection(p.run('requestHeaders', new RequestContext())))?.code, 'MG_TIMEOUT')
  await new Promise((r) => setTimeout(r, 60))
  t.same(unhandled, [])
})

t.test('a synchronous stage that overruns the deadline ends the phase in MG_TIMEOUT, and later stages do not run', async (t) => {
  const log: string[] = []
  const busy = (ms: number) => {
    const until = performance.now() + ms
    while (performance.now() < until) {
      /* burn CPU without yielding */
    }
  }
  const p = new Pipeline(
    [
      { name: 'spin', requestBody: () => busy(40) },
      { name: 'after', requestBody: () => void log.push('after') },
    ],
    { phaseTimeoutMs: 20 },
  )
  const err = await rejection(p.run('requestBody', new RequestContext()))
  t.equal(err?.code, 'MG_TIMEOUT')
  t.equal(err?.internal, 'phase requestBody exceeded 20 ms (spin finished after the deadline)')
  t.same(log, [])
})

t.test('a stage denial wins over a deadline it also overran', async (t) => {
  const p = new Pipeline(
    [
      {
        name: 'slow-deny',
        requestBody: () => {
          const until = performance.now() + 30
          while (performance.now() < until) {
            /* spin */
          }
          throw new GateError('MG_POLICY_DENIED')
        },
      },
    ],
    { phaseTimeoutMs: 10 },
  )
  t.equal((await rejection(p.run('requestBody', new RequestContext())))?.code, 'MG_POLICY_DENIED')
})

t.test('a phase whose stages are all synchronous arms no timer', async (t) => {
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
  const p = new Pipeline([{ name: 'a', responseBody: () => {} }, { name: 'b', responseBody: () => {} }], { phaseTimeoutMs: 10_000 })
  const before = timers()
  const pending = p.run('responseBody', new RequestContext(), { data: Buffer.alloc(0), end: false })
  t.equal(timers(), before, 'no timer while the phase runs')
  await pending
})

t.test('a phase without stages resolves at once and arms no timer', async (t) => {
  const p = new Pipeline([], { phaseTimeoutMs: 10 })
  await p.run('responseTrailers', new RequestContext())
  t.pass()
})

t.test('timings are recorded per stage, summed over phases, also for failing stages', async (t) => {
  const p = new Pipeline(
    [
      { name: 'a', requestHeaders: () => {}, requestBody: async () => new Promise<void>((r) => setTimeout(r, 5)) },
      {
        name: 'b',
        requestBody: () => {
          throw new GateError('MG_POLICY_DENIED')
        },
      },
      { name: 'c', requestBody: () => {} },
    ],
    { phaseTimeoutMs: 1000 },
  )
  const ctx = new RequestContext()
  await p.run('requestHeaders', ctx)
  const afterHeaders = ctx.timings.get('a')!
  await rejection(p.run('requestBody', ctx))
  t.same([...ctx.timings.keys()].sort(), ['a', 'b'])
  t.ok(ctx.timings.get('a')! > afterHeaders, 'a second phase adds to the first')
  t.ok(ctx.timings.get('b')! >= 0)
  t.equal(ctx.timings.has('c'), false, 'a stage that never ran has no timing')
})

t.test('close calls every stage once, in reverse order, and survives a failing close', async (t) => {
  const log: string[] = []
  const errors: [string, string][] = []
  const p = new Pipeline(
    [
      recorder('a', log),
      { name: 'no-close' },
      recorder('b', log, {
        close: () => {
          log.push('b:close')
          throw new Error('close failed')
        },
      }),
      recorder('c', log),
    ],
    { phaseTimeoutMs: 1000, onStageError: (s, _ph, e) => void errors.push([s, e.code]) },
  )
  const outcome: StreamOutcome = { kind: 'cancelled' }
  p.close(new RequestContext(), outcome)
  t.same(log, ['c:close:cancelled', 'b:close', 'a:close:cancelled'])
  t.same(errors, [['b', 'MG_INTERNAL']])
})

t.test('two stages with the same name are refused at construction', async (t) => {
  t.throws(() => new Pipeline([{ name: 'identity' }, { name: 'identity' }], { phaseTimeoutMs: 100 }), { message: 'pipeline: two stages are named "identity"' })
})

t.test('a stage that consumes an output no earlier stage produces is refused at construction, with every such problem', async (t) => {
  t.throws(
    () =>
      new Pipeline(
        [
          { name: 'policy', consumes: ['caller', 'request'], produces: ['decision'] },
          { name: 'identity', produces: ['caller'] },
        ],
        { phaseTimeoutMs: 100 },
      ),
    { message: 'pipeline: stage "policy" consumes "caller", which no stage before it produces; stage "policy" consumes "request", which no stage before it produces' },
  )
})

t.test('the pipeline records which stage may write each output', async (t) => {
  const p = new Pipeline([{ name: 'identity', produces: ['caller'] }, { name: 'policy', consumes: ['caller'], produces: ['decision'] }], { phaseTimeoutMs: 100 })
  t.same([...(p.owners.caller ?? [])], ['identity'])
  t.same([...(p.owners.decision ?? [])], ['policy'])
})

t.test('a stage that writes an output it does not produce fails the request closed', async (t) => {
  const p = new Pipeline(
    [
      { name: 'identity', produces: ['caller'] },
      { name: 'rogue', requestHeaders: (ctx) => void ctx.put('caller', { workload: { spiffeId: 'spiffe://evil/x', trustDomain: 'evil', path: '/x', namespace: undefined, serviceAccount: undefined, source: 'mtls', certificateSha256: undefined }, user: undefined }) },
    ],
    { phaseTimeoutMs: 100 },
  )
  const ctx = new RequestContext()
  await t.rejects(p.run('requestHeaders', ctx), { code: 'MG_INTERNAL' })
  t.equal(ctx.out.caller, undefined, 'nothing was written')
})

t.test('a stage that finds nothing to do for a request is called no more for it, and still closes', async (t) => {
  const log: string[] = []
  const idle = recorder('idle', log, {
    requestHeaders: (ctx) => {
      log.push('idle:requestHeaders')
      ctx.markIdle('idle')
    },
  })
  const p = new Pipeline([recorder('a', log), idle, recorder('c', log)], { phaseTimeoutMs: 1000 })
  const ctx = new RequestContext()
  for (const phase of PHASES) await p.run(phase, ctx, phase === 'responseBody' ? { data: Buffer.alloc(0), end: true } : undefined)
  p.close(ctx, { kind: 'completed' })
  t.same(log.filter((l) => l.startsWith('idle:')), ['idle:requestHeaders', 'idle:close:completed'])
  t.equal(log.filter((l) => l.startsWith('c:') && !l.includes('close')).length, PHASES.length, 'the stages after it still run')
  t.ok(ctx.timings.has('idle'), 'its time so far stays in the timings')
  const other = new RequestContext()
  await p.run('requestBody', other)
  t.ok(log.includes('idle:requestBody'), 'another request is a new question')
})
