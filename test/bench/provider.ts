/**
 * The stand-in model provider as its own process for the Envoy benchmark: SSE
 * answers are written event by event without a pause, so a streamed answer
 * costs the provider no time the benchmark would have to wait out.
 *
 *   node test/bench/provider.ts    → prints {"host", "port", "url"} once listening
 */
import { StandInProvider } from '../../src/dev/provider.ts'

const provider = new StandInProvider({ sseIntervalMs: 0 })
const addr = await provider.listen(0, '127.0.0.1')
process.stdout.write(JSON.stringify(addr) + '\n')
process.once('SIGTERM', () => void provider.close().then(() => process.exit(0)))
