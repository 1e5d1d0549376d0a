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
