import t from 'tap'
import { Timeline } from '../../../src/audit/timeline.ts'

const ms = (n: number) => BigInt(Math.round(n * 1e6))

t.test('each phase is split among the stages that spent time in it, one after another', async (t) => {
  const tl = new Timeline()
  const timings = new Map<string, number>()
  tl.mark('requestHeaders', timings, ms(0))
  timings.set('audit', 0.1)
  timings.set('identity', 0.5)
  tl.mark('requestBody', timings, ms(10))
  timings.set('audit', 0.2)
  timings.set('provider', 1)
  timings.set('policy', 2)
  tl.settle(timings)
  t.same(
    tl.slices().map((s) => [s.stage, s.phase, Number(s.startNs) / 1e6, Number(s.endNs) / 1e6, s.busyMs, s.calls]),
    [
      ['audit', 'requestHeaders', 0, 0.1, 0.1, 1],
      ['identity', 'requestHeaders', 0.1, 0.6, 0.5, 1],
      ['audit', 'requestBody', 10, 10.1, 0.1, 1],
      ['provider', 'requestBody', 10.1, 11.1, 1, 1],
      ['policy', 'requestBody', 11.1, 13.1, 2, 1],
    ],
  )
  t.ok(tl.saw('requestBody'))
  t.notOk(tl.saw('responseBody'))
})

t.test('streamed body chunks merge into one slice per stage, from the first run to the last', async (t) => {
  const tl = new Timeline()
  const timings = new Map<string, number>([['redaction', 0]])
  for (let i = 0; i < 5; i++) {
    tl.mark('responseBody', timings, ms(100 + i * 10))
    timings.set('redaction', (timings.get('redaction') ?? 0) + 0.2)
  }
  tl.settle(timings)
  const [s] = tl.slices()
  t.equal(tl.slices().length, 1)
  t.equal(s!.stage, 'redaction')
  t.equal(Number(s!.startNs) / 1e6, 100)
  t.equal(Number(s!.endNs) / 1e6, 140.2)
  t.equal(Math.round(s!.busyMs * 1000) / 1000, 1)
  t.equal(s!.calls, 5)
})

t.test('settling twice, or without a mark, adds nothing', async (t) => {
  const tl = new Timeline()
  const timings = new Map([['a', 1]])
  tl.settle(timings)
  tl.mark('requestHeaders', timings, 0n)
  timings.set('a', 2)
  tl.settle(timings)
  tl.settle(timings)
  t.equal(tl.slices().length, 1)
  t.equal(tl.slices()[0]!.busyMs, 1)
})
