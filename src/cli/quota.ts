/** `modelgate quota show`: the current use of every quota rule, per partition, read from the configured store. */
import { resolve } from 'node:path'
import { resolveConfigPath } from '../config/config.ts'
import { RedisStore, redisOptionsFromConfig } from '../quotas/redis.ts'
import { compileRule, refResolver } from '../quotas/rules.ts'
import { loadCommandConfig } from './config.ts'
import { EXIT_USAGE, parseCommandLine, type CliIO } from './io.ts'

const HELP = `usage: modelgate quota show [--config FILE]

Prints the current use of every quota rule, per partition (the values of
its \`per\` facts), from the configured store. Only counters in use are
listed. With \`quotas.store: memory\` the counters live inside each modelgate
process and cannot be read from outside.
  --config FILE   configuration file (default: $MODELGATE_CONFIG, else modelgate.yaml)
`

export async function run(argv: string[], io: CliIO): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout.write(HELP)
    return 0
  }
  if (sub !== 'show') {
    io.stderr.write(`modelgate quota: ${sub === undefined ? 'a subcommand is required' : `unknown subcommand "${sub}"`}\n\n${HELP}`)
    return EXIT_USAGE
  }
  const parsed = parseCommandLine('quota show', HELP, io, { args: rest, options: { config: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false })
  if (typeof parsed === 'number') return parsed
  const file = resolve(io.cwd, parsed.values.config ?? io.env.MODELGATE_CONFIG ?? 'modelgate.yaml')
  const config = loadCommandConfig(file, io)
  if (config === 1) return 1
  const rules = config.quotas.rules.map(compileRule)
  if (rules.length === 0) {
    io.stdout.write(`${file}: no quota rules\n`)
    return 0
  }
  if (config.quotas.store === 'memory') {
    io.stdout.write('quotas.store is memory: the counters live inside each modelgate process and cannot be read from outside (use quotas.store: redis to share and inspect them)\n')
    return 0
  }
  const store = new RedisStore({ ...redisOptionsFromConfig(config.quotas.redis, (p) => resolveConfigPath(config, p)) })
  try {
    if (!(await store.connect())) {
      io.stderr.write(`modelgate quota show: cannot reach ${redactUrl(config.quotas.redis.url)}\n`)
      return 1
    }
    const refOf = refResolver(rules)
    const usage = await store.usage(refOf)
    io.stdout.write(table(usage.map((u) => ({ u, ref: refOf(u.key)! }))))
    return 0
  } catch (err) {
    io.stderr.write(`modelgate quota show: ${(err as Error).message}\n`)
    return 1
  } finally {
    await store.close()
  }
}

/** The URL without its password. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return '(the configured URL)'
  }
}

type Row = { u: { key: string; used: number }; ref: NonNullable<ReturnType<ReturnType<typeof refResolver>>> }

function table(rows: readonly Row[]): string {
  const lines = [['rule', 'counter', 'window', 'limit', 'used', 'remaining', 'partition']]
  for (const { u, ref } of rows) {
    const partition = ref.partition === '*' ? '(all)' : ref.rule.per.map((d, i) => `${d}=${decodeURIComponent(ref.partition.split('|')[i] ?? '-')}`).join(' ')
    lines.push([ref.rule.name, ref.kind, ref.rule.window ?? '-', String(ref.limit), String(u.used), String(Math.max(0, ref.limit - u.used)), partition])
  }
  if (rows.length === 0) return 'no counter in use\n'
  const widths = lines[0]!.map((_, c) => Math.max(...lines.map((l) => l[c]!.length)))
  return lines.map((l) => l.map((cell, c) => (c === l.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ')).join('\n') + '\n'
}
