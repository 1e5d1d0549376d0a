/**
 * The data path at saturation through a real Envoy: 32 requests in flight
 * over 4 HTTP/2 connections with the OpenAI SDK, JSON and SSE answers. Every
 * answer is a 2xx, Envoy neither resets nor loses an ext_proc stream or
 * connection, and modelgate reports none. Bounded by a request count and a
 * time limit per part; loopback only.
 */
import { readFileSync } from 'node:fs'
import t from 'tap'
import OpenAI, { APIError } from 'openai'
import { Agent, fetch as undiciFetch } from 'undici'
import { envoyStats } from '../../src/dev/envoy.ts'
import { createLogger } from '../../src/log.ts'
import { startStack, type Stack } from '../helpers/stack.ts'

const IN_FLIGHT = 32
const CONNECTIONS = 4
/** Each part stops at this many requests or after TIME_LIMIT_MS, whichever comes first. */
const REQUESTS = { json: 2000, sse: 800 }
const TIME_LIMIT_MS = 20_000

/** About 1 KiB of prompt with an e-mail address, which modelgate redacts on the way. */
const PROMPT =
  'Contact jane.doe@example.org about the refund before Friday. ' +
  'Summarise the incident notes for the weekly review, keeping the timeline and the follow-up owners. '.repeat(9)

const STATS = '^cluster\\.modelgate\\.|^http\\.workloads\\.ext_proc\\.|^http\\.workloads\\.downstream_cx_http2_total$'

interface Tally {
  ok: number
  failures: Map<string, number>
}

/** Runs `one` from IN_FLIGHT workers until `total` requests were made or the time limit passed. */
async function saturate(total: number, one: () => Promise<void>): Promise<Tally> {
  const tally: Tally = { ok: 0, failures: new Map() }
  const deadline = Date.now() + TIME_LIMIT_MS
  let started = 0
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (started < total && Date.now() < deadline) {
        started++
        try {
          await one()
          tally.ok++
        } catch (err) {
          const key = err instanceof APIError ? `${err.status} ${(err.headers as Headers | undefined)?.get?.('x-modelgate-error') ?? ''}` : (err as Error).message
          tally.failures.set(key, (tally.failures.get(key) ?? 0) + 1)
        }
      }
    }),
  )
  return tally
}

t.test('at saturation through Envoy', async (t) => {
  const logs: Record<string, unknown>[] = []
  const stack: Stack = await startStack({ logger: createLogger({ level: 'info', write: (l) => logs.push(JSON.parse(l) as Record<string, unknown>) }) })
  t.teardown(() => stack.close())
  const c = stack.clients.checkout
  const agent = new Agent({
    allowH2: true,
    connections: CONNECTIONS,
    connect: { ca: readFileSync(stack.pki.ca.cert), cert: readFileSync(c.cert), key: readFileSync(c.key), servername: 'localhost' },
  })
  t.teardown(() => agent.close())
  const openai = new OpenAI({
    apiKey: 'sk-test-not-a-real-key',
    baseURL: `${stack.url}/v1`,
    maxRetries: 0,
    timeout: 20_000,
    fetch: undiciFetch as unknown as typeof fetch,
    fetchOptions: { dispatcher: agent } as never,
  })
  const before = await envoyStats(stack.envoy.adminUrl, STATS)
  const delta = async () => {
    const after = await envoyStats(stack.envoy.adminUrl, STATS)
    return (name: string) => (after[name] ?? 0) - (before[name] ?? 0)
  }

  t.test(`${IN_FLIGHT} chat completions in flight: every answer is a 2xx`, async (t) => {
    const tally = await saturate(REQUESTS.json, async () => {
      const res = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }] })
      if (!res.choices[0]?.message.content?.startsWith('Stand-in reply.')) throw new Error('unexpected answer')
    })
    t.same(Object.fromEntries(tally.failures), {}, 'no failures')
    t.ok(tally.ok >= 200, `${tally.ok} answered`)
  })

  t.test(`${IN_FLIGHT} streamed chat completions in flight: every stream completes, passing modelgate chunk by chunk`, async (t) => {
    const sent0 = await envoyStats(stack.envoy.adminUrl, STATS)
    const tally = await saturate(REQUESTS.sse, async () => {
      const stream = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], stream: true })
      let text = ''
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
      if (!text.startsWith('Stand-in reply.')) throw new Error('unexpected answer')
    })
    t.same(Object.fromEntries(tally.failures), {}, 'no failures')
    t.ok(tally.ok >= 100, `${tally.ok} streams completed`)
    const sent1 = await envoyStats(stack.envoy.adminUrl, STATS)
    const messages = sent1['http.workloads.ext_proc.stream_msgs_sent']! - sent0['http.workloads.ext_proc.stream_msgs_sent']!
    const streams = sent1['http.workloads.ext_proc.streams_started']! - sent0['http.workloads.ext_proc.streams_started']!
    // Buffered, an exchange is 4 messages; streamed, the answer's chunks come one message each.
    t.ok(messages / streams > 5, `${(messages / streams).toFixed(1)} ext_proc messages per stream: the STREAMED override took effect`)
  })

  t.test('Envoy reset, refused or lost no ext_proc stream and no connection', async (t) => {
    const d = await delta()
    t.ok(d('http.workloads.downstream_cx_http2_total') >= 1, 'the callers spoke HTTP/2')
    t.ok(d('cluster.modelgate.upstream_rq_total') >= 300, `${d('cluster.modelgate.upstream_rq_total')} ext_proc streams`)
    t.equal(d('cluster.modelgate.upstream_rq_tx_reset'), 0, `no stream reset by Envoy (graceful close): ${d('cluster.modelgate.upstream_rq_tx_reset')}`)
    t.equal(d('cluster.modelgate.upstream_rq_rx_reset'), 0, 'no stream refused or reset by modelgate')
    t.equal(d('cluster.modelgate.upstream_cx_destroy_remote'), 0, 'no connection closed by modelgate')
    t.equal(d('cluster.modelgate.upstream_cx_destroy_local_with_active_rq'), 0, 'no connection closed by Envoy with streams open')
    t.equal(d('http.workloads.ext_proc.streams_failed'), 0, 'no ext_proc stream failed')
    t.equal(d('http.workloads.ext_proc.message_timeouts'), 0, 'no message timed out')
  })

  t.test('modelgate reported no reset and no connection closed with streams open', async (t) => {
    t.same(
      logs.filter((l) => /reset|closed an ext_proc connection|with streams open/.test(String(l.msg))).map((l) => l.msg),
      [],
    )
  })
})
