import t from 'tap'
import { Timeline } from '../../../src/audit/timeline.ts'

const ms = (n: number) => BigInt(Math.round(n * 1e6))
const view = (tl: Timeline) => tl.slices().map((s) => [s.stage, s.direction, s.phases, Number(s.startNs) / 1e6, Number(s.endNs) / 1e6, Math.round(s.busyMs * 1000) / 1000, s.calls])

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
  t.same(view(tl), [
    ['audit', 'request', ['requestHeaders', 'requestBody'], 0, 10.1, 0.2, 2],
    ['identity', 'request', ['requestHeaders'], 0.1, 0.6, 0.5, 1],
    ['provider', 'request', ['requestBody'], 10.1, 11.1, 1, 1],
    ['policy', 'request', ['requestBody'], 11.1, 13.1, 2, 1],
  ])
  t.ok(tl.saw('requestBody'))
  t.notOk(tl.saw('responseBody'))
})

t.test('request and response work of one stage are separate slices; the skipped stage has none', async (t) => {
  const tl = new Timeline('audit')
  const timings = new Map<string, number>()
  tl.mark('requestBody', timings, ms(0))
  timings.set('audit', 0.1)
  timings.set('redaction', 1)
  tl.mark('responseHeaders', timings, ms(100))
  timings.set('audit', 0.2)
  timings.set('redaction', 1.5)
  tl.settle(timings)
  t.same(view(tl), [
    ['redaction', 'request', ['requestBody'], 0.1, 1.1, 1, 1],
    ['redaction', 'response', ['responseHeaders'], 100.1, 100.6, 0.5, 1],
  ])
})

t.test('streamed body chunks merge into one slice per stage, from the first run to the last', async (t) => {
  const tl = new Timeline()
  const timings = new Map<string, number>([['redaction', 0]])
  for (let i = 0; i < 5; i++) {
    tl.mark('responseBody', timings, ms(100 + i * 10))
    timings.set('redaction', (timings.get('redaction') ?? 0) + 0.2)
  }
  tl.settle(timings)
  t.same(view(tl), [['redaction', 'response', ['responseBody'], 100, 140.2, 1, 5]])
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

t.test('without slicing, a timeline only notes the phases it saw and keeps no slices', async (t) => {
  const tl = new Timeline('audit', { slicing: false })
  const timings = new Map<string, number>([['identity', 0.5]])
  tl.mark('requestHeaders', timings, ms(0))
  timings.set('provider', 1)
  tl.mark('requestBody', timings, ms(5))
  tl.settle(timings)
  t.ok(tl.saw('requestHeaders'))
  t.ok(tl.saw('requestBody'))
  t.same(tl.slices(), [])
})
