/** `modelgate dev-provider`: the stand-in model provider as its own process. */
import { readFileSync } from 'node:fs'
import { StandInProvider, type ProviderKeys } from '../dev/provider.ts'
import { EXIT_USAGE, parseCommandLine, type CliIO } from './io.ts'

const HELP = `usage: modelgate dev-provider [--host 127.0.0.1] [--port 0] [--keys FILE]

Serves OpenAI- and Anthropic-compatible answers (JSON and SSE) for local use.
Prints one JSON line {"url": ...} once listening; stops on SIGTERM/SIGINT.
  --keys FILE   JSON {"openai": [...], "anthropic": [...], "azure": [...]}: accept only
                these keys, as each provider checks them (401 in its own shape otherwise)
`

export async function run(argv: string[], io: CliIO): Promise<number> {
  const parsed = parseCommandLine('dev-provider', HELP, io, { args: argv, options: { host: { type: 'string' }, port: { type: 'string' }, keys: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true })
  if (typeof parsed === 'number') return parsed
  const { values } = parsed
  const port = Number(values.port ?? '0')
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    io.stderr.write(`modelgate dev-provider: --port must be 0..65535\n`)
    return EXIT_USAGE
  }
  const host = values.host ?? '127.0.0.1'
  if (!['127.0.0.1', 'localhost', '::1'].includes(host)) {
    io.stderr.write('modelgate dev-provider: the stand-in provider only listens on loopback\n')
    return EXIT_USAGE
  }
  let keys: ProviderKeys | undefined
  if (values.keys !== undefined) {
    try {
      keys = JSON.parse(readFileSync(values.keys, 'utf8')) as ProviderKeys
    } catch (err) {
      io.stderr.write(`modelgate dev-provider: --keys: ${(err as Error).message}\n`)
      return EXIT_USAGE
    }
  }
  const provider = new StandInProvider(keys ? { keys } : {})
  const addr = await provider.listen(port, host)
  io.stdout.write(JSON.stringify({ url: addr.url, host: addr.host, port: addr.port }) + '\n')
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve)
    process.once('SIGINT', resolve)
  })
  await provider.close()
  return 0
}
