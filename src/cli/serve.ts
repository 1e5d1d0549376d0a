/** `modelgate serve`: run the ext_proc server until SIGTERM/SIGINT, then drain and exit. */
import { startApp } from '../app.ts'
import { createLogger } from '../log.ts'
import { loadCommandConfig } from './config.ts'
import { parseCommandLine, type CliIO } from './io.ts'

const HELP = `usage: modelgate serve [--config FILE]

Runs the ext_proc gRPC server. The configuration file (YAML) is validated once
at start-up; every problem is listed with its file, line and field.
  --config FILE   configuration file (default: $MODELGATE_CONFIG, else modelgate.yaml)
  --check         validate the configuration and exit
`

export async function run(argv: string[], io: CliIO): Promise<number> {
  const parsed = parseCommandLine('serve', HELP, io, { args: argv, options: { config: { type: 'string' }, check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false })
  if (typeof parsed === 'number') return parsed
  const { values } = parsed
  const file = values.config ?? io.env.MODELGATE_CONFIG ?? 'modelgate.yaml'
  const config = loadCommandConfig(file, io)
  if (config === 1) return 1
  if (values.check) {
    io.stdout.write(`${file}: configuration is valid\n`)
    return 0
  }
  const logger = createLogger()
  let app
  try {
    app = await startApp({ config, logger })
  } catch (err) {
    // Policy, detector and key problems are listed like configuration problems: one per line, with file and line.
    io.stderr.write(`modelgate serve: cannot start: ${(err as Error).message}\n`)
    return 1
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info('signal received', { signal })
      process.off('SIGTERM', onTerm)
      process.off('SIGINT', onInt)
      void app.shutdown().then(resolve)
    }
    const onTerm = () => stop('SIGTERM')
    const onInt = () => stop('SIGINT')
    process.on('SIGTERM', onTerm)
    process.on('SIGINT', onInt)
  })
  return 0
}
