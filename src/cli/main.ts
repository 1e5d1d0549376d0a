#!/usr/bin/env node
/**
 * `modelgate <command>`: the single entry point. Each command lives in its own
 * module under src/cli/ and is loaded only when used.
 */
import { readFileSync } from 'node:fs'
import { EXIT_USAGE, type CliIO, type Command } from './io.ts'

const COMMANDS: Record<string, { summary: string; load: () => Promise<{ run: Command }> }> = {
  serve: { summary: 'run the ext_proc server (modelgate serve --config modelgate.yaml)', load: () => import('./serve.ts') },
  start: { summary: 'run a local stack: Envoy + modelgate + a stand-in provider, with dev certificates', load: () => import('./start.ts') },
  policy: { summary: 'validate, format, test and explain Cedar policies', load: () => import('./policy.ts') },
  redact: { summary: 'show what a request body looks like after redaction', load: () => import('./redact.ts') },
  audit: { summary: 'read, verify and summarise audit records', load: () => import('./audit.ts') },
  quota: { summary: 'show the current use of every quota rule from the configured store', load: () => import('./quota.ts') },
  health: { summary: 'check a running modelgate over grpc.health.v1 (exit 0 when serving)', load: () => import('./health.ts') },
  'dev-provider': { summary: 'run the stand-in model provider on its own (used by start)', load: () => import('./dev-provider.ts') },
}

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length))
  return [
    'usage: modelgate <command> [options]',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `modelgate <command> --help` for the options of one command, `modelgate version` for the version.',
  ].join('\n')
}

/** `modelgate <version> (Node.js <version>)`: the runtime matters, modelgate needs Node.js 24. */
export function versionLine(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return `modelgate ${pkg.version} (Node.js ${process.version})`
}

export async function main(argv: string[], io: CliIO): Promise<number> {
  const [name, ...rest] = argv
  if (name === '--version' || name === '-v' || name === 'version') {
    io.stdout.write(versionLine() + '\n')
    return 0
  }
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    ;(name ? io.stdout : io.stderr).write(usage() + '\n')
    return name ? 0 : EXIT_USAGE
  }
  const cmd = COMMANDS[name]
  if (!cmd) {
    io.stderr.write(`modelgate: unknown command "${name}"\n\n${usage()}\n`)
    return EXIT_USAGE
  }
  const mod = await cmd.load()
  return mod.run(rest, io)
}

if (import.meta.main) {
  // A child of `modelgate start` (or of bin/modelgate.js) stops when its parent is gone.
  if (process.env.MODELGATE_EXIT_WITH_PARENT === '1') (await import('../dev/process.ts')).exitWithParent()
  const code = await main(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    cwd: process.cwd(),
    env: process.env,
  })
  process.exitCode = code
}
