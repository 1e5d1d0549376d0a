import { parseArgs, type ParseArgsConfig } from 'node:util'

/** What a CLI command gets from the outside world; tests pass their own. */
export interface CliIO {
  readonly stdout: NodeJS.WritableStream
  readonly stderr: NodeJS.WritableStream
  readonly stdin: NodeJS.ReadableStream
  readonly cwd: string
  readonly env: NodeJS.ProcessEnv
}

/** A subcommand: returns the process exit code. 0 ok, 1 failure, 2 usage error (unless the command documents others). */
export type Command = (argv: string[], io: CliIO) => Promise<number>

/** Exit code for usage errors, shared by every command. */
export const EXIT_USAGE = 2

/**
 * parseArgs with the handling every command shares: a usage error is printed
 * with the command's help (exit 2), and `--help` prints the help (exit 0).
 * Returns the parsed arguments, or the exit code when the command is done.
 */
export function parseCommandLine<T extends ParseArgsConfig>(command: string, help: string, io: CliIO, config: T): ReturnType<typeof parseArgs<T>> | number {
  let parsed: ReturnType<typeof parseArgs<T>>
  try {
    parsed = parseArgs(config)
  } catch (err) {
    io.stderr.write(`modelgate ${command}: ${(err as Error).message}\n\n${help}`)
    return EXIT_USAGE
  }
  if ((parsed.values as { help?: boolean }).help) {
    io.stdout.write(help)
    return 0
  }
  return parsed
}

/** Reads all of a stream into a Buffer (bounded by maxBytes). */
export async function readAll(stream: NodeJS.ReadableStream, maxBytes = 64 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const c of stream as AsyncIterable<Buffer | string>) {
    const b = typeof c === 'string' ? Buffer.from(c) : c
    total += b.length
    if (total > maxBytes) throw new Error(`input is larger than ${maxBytes} bytes`)
    chunks.push(b)
  }
  return Buffer.concat(chunks)
}
