/**
 * MCP through modelgate: latency (p50/p99) of sequential tools/call round
 * trips made with the official MCP SDK client, through Envoy and modelgate
 * (the e2e harness: real Envoy, modelgate in this process, the stand-in MCP
 * server built with the SDK's server) and straight to the stand-in, same
 * client, same session kind (2025-11-25, SSE results). The difference is
 * what Envoy, mTLS and the whole pipeline (identity, parse, redaction scan,
 * Cedar call_tool with the session and hints, redaction of the result,
 * session recording, audit) add per tool step.
 *
 *   node test/bench/mcp.bench.ts [--calls 500]
 *
 * Not a test: it asserts nothing and is not run by `npm test`.
 */
import { parseArgs } from 'node:util'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { startStack } from '../helpers/stack.ts'
import { StandInMcpServer } from '../../src/dev/mcp-server.ts'

const { values } = parseArgs({ options: { calls: { type: 'string', default: '500' } } })
const calls = Number(values.calls)

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

async function measure(client: Client): Promise<{ p50: number; p99: number }> {
  await client.listTools()
  for (let i = 0; i < 50; i++) await client.callTool({ name: 'echo', arguments: { text: `warm ${i}` } })
  const ms: number[] = []
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now()
    await client.callTool({ name: 'echo', arguments: { text: `call ${i}` } })
    ms.push(performance.now() - t0)
  }
  ms.sort((a, b) => a - b)
  return { p50: quantile(ms, 0.5), p99: quantile(ms, 0.99) }
}

const direct = new StandInMcpServer()
const { port } = await direct.listen()
const plain = new Client({ name: 'bench', version: '1.0.0' })
await plain.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`)))
const straight = await measure(plain)
await plain.close()
await direct.close()

const stack = await startStack()
const gated = await stack.mcp('notebook')
const through = await measure(gated)
await gated.close()
await stack.close()

const f = (n: number) => n.toFixed(2)
console.log(`tools/call, ${calls} sequential calls, MCP SDK client (2025-11-25, SSE results)`)
console.log(`straight to the stand-in:     p50 ${f(straight.p50)} ms  p99 ${f(straight.p99)} ms`)
console.log(`through Envoy and modelgate:  p50 ${f(through.p50)} ms  p99 ${f(through.p99)} ms`)
console.log(`added per tool step:          p50 ${f(through.p50 - straight.p50)} ms  p99 ${f(through.p99 - straight.p99)} ms`)
