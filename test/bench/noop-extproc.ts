/**
 * A no-op ext_proc server: the floor of the mechanism (Envoy, gRPC over a Unix
 * socket, grpc-js) against which modelgate's pipeline is measured. It answers
 * every message with "continue", switches SSE responses to STREAMED exactly as
 * modelgate does (so both see the same messages), and ends each stream OK once
 * Envoy half-closes it.
 *
 *   node test/bench/noop-extproc.ts <socket path>
 *
 * Prints one line, `listening <address>`, once it serves; stops on SIGTERM.
 */
import { rmSync } from 'node:fs'
import * as grpc from '@grpc/grpc-js'
import { loadExtProcService, type ProcessingRequestMsg, type ProcessingResponseMsg } from '../../src/server/codec.ts'

const socket = process.argv[2]
if (!socket) {
  process.stderr.write('usage: node test/bench/noop-extproc.ts <socket path>\n')
  process.exit(2)
}

/** The same limits modelgate's server uses for a 1 MiB body. */
const MAX_MESSAGE = (1 << 20) + 256 * 1024

function answer(m: ProcessingRequestMsg): ProcessingResponseMsg | undefined {
  switch (m.request) {
    case 'request_headers':
      return { request_headers: {} }
    case 'request_body':
      return { request_body: {} }
    case 'request_trailers':
      return { request_trailers: {} }
    case 'response_headers': {
      const sse = (m.response_headers?.headers?.headers ?? []).some(
        (h) => h.key === 'content-type' && (h.raw_value?.toString('latin1') ?? h.value ?? '').startsWith('text/event-stream'),
      )
      return sse ? { response_headers: {}, mode_override: { response_body_mode: 'STREAMED' } } : { response_headers: {} }
    }
    case 'response_body':
      return { response_body: {} }
    case 'response_trailers':
      return { response_trailers: {} }
    default:
      return undefined
  }
}

const server = new grpc.Server({
  'grpc.max_receive_message_length': MAX_MESSAGE,
  'grpc.max_send_message_length': MAX_MESSAGE,
  'grpc.max_concurrent_streams': 100000,
})
server.addService(loadExtProcService(), {
  Process(call: grpc.ServerDuplexStream<ProcessingRequestMsg, ProcessingResponseMsg>) {
    call.on('data', (m: ProcessingRequestMsg) => {
      const a = answer(m)
      if (a) call.write(a)
    })
    call.on('end', () => call.end())
    call.on('error', () => {})
  },
})
rmSync(socket, { force: true })
server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    process.stderr.write(`${err.message}\n`)
    process.exit(1)
  }
  process.stdout.write(`listening unix://${socket}\n`)
})
process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)))
