/**
 * `modelgate health`: asks a running modelgate for its grpc.health.v1 status.
 * Exit 0 when SERVING, 1 otherwise: usable as a Kubernetes exec probe.
 */
import * as grpc from '@grpc/grpc-js'
import { service as healthService } from 'grpc-health-check'
import { ConfigError, loadConfigFile } from '../config/config.ts'
import { EXT_PROC_SERVICE } from '../server/codec.ts'
import { EXIT_USAGE, parseCommandLine, type CliIO } from './io.ts'

const HELP = `usage: modelgate health [--address ADDR | --config FILE] [--timeout MS]

Checks the ext_proc service of a running modelgate over grpc.health.v1.
  --address ADDR  unix:///path or host:port (default: server.listen from the configuration)
  --config FILE   configuration file (default: $MODELGATE_CONFIG, else modelgate.yaml)
  --timeout MS    give up after this long (default 2000)
Exit status: 0 SERVING, 1 anything else.
`

export async function run(argv: string[], io: CliIO): Promise<number> {
  const parsed = parseCommandLine('health', HELP, io, { args: argv, options: { address: { type: 'string' }, config: { type: 'string' }, timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true })
  if (typeof parsed === 'number') return parsed
  const { values } = parsed
  const timeout = Number(values.timeout ?? '2000')
  if (!Number.isInteger(timeout) || timeout <= 0) {
    io.stderr.write('modelgate health: --timeout must be a positive integer\n')
    return EXIT_USAGE
  }
  let address = values.address
  if (!address) {
    try {
      address = loadConfigFile(values.config ?? io.env.MODELGATE_CONFIG ?? 'modelgate.yaml').server.listen
    } catch (err) {
      io.stderr.write((err instanceof ConfigError ? err.message : (err as Error).message) + '\n')
      return 1
    }
  }
  try {
    const status = await checkHealth(address, timeout)
    io.stdout.write(`${status}\n`)
    return status === 'SERVING' ? 0 : 1
  } catch (err) {
    io.stderr.write(`modelgate health: ${address}: ${(err as Error).message}\n`)
    return 1
  }
}

/** The grpc.health.v1 status of modelgate's ext_proc service at `address` (rejects when unreachable). */
export async function checkHealth(address: string, timeoutMs: number): Promise<string> {
  const Client = grpc.makeGenericClientConstructor(healthService, 'Health')
  const client = new Client(address, grpc.credentials.createInsecure()) as unknown as {
    Check(req: { service: string }, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void
    close(): void
  }
  try {
    return await new Promise<string>((resolve, reject) =>
      client.Check({ service: EXT_PROC_SERVICE }, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res?.status ?? 'UNKNOWN'))),
    )
  } finally {
    client.close()
  }
}
