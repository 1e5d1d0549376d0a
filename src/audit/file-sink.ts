/**
 * The file sink: every record appended as one JSON line to a local file, in
 * the order records end. `modelgate audit` reads these files directly.
 *
 * Lines are gathered for up to FLUSH_DELAY_MS (or until FLUSH_BYTES are
 * waiting) and go out in one asynchronous write: a write per request costs
 * the event loop more than the record itself (a thread-pool hand-off and a
 * system call each), and never blocks it. A record is in the file at most
 * FLUSH_DELAY_MS after its request ended; one lost with the process in that
 * window shows as a gap in the hash chain, like a record still in the OTLP
 * batch. `flush()` and `close()` write at once.
 *
 * The file is append-only; rotate it with a tool that copies and truncates
 * (records are appended with O_APPEND, so truncation is safe).
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs'
import { dirname } from 'node:path'
import type { Logger } from '../log.ts'
import type { SpanRecord } from './record.ts'

/** Bytes waiting for the disk beyond which the sink reports itself unavailable. */
const MAX_PENDING_BYTES = 64 * 1024 * 1024
/** How long lines wait to be written together. */
export const FLUSH_DELAY_MS = 20
/** Gathered lines of at least this many characters are written without waiting for the delay. */
const FLUSH_BYTES = 256 * 1024

export class FileSink {
  readonly path: string
  readonly #logger: Logger
  readonly #stream: WriteStream
  #lines: string[] = []
  #pending = 0
  #timer: NodeJS.Timeout | undefined
  #failed: Error | undefined
  #closed: Promise<void> | undefined
  #dropped = 0

  constructor(path: string, logger: Logger) {
    this.path = path
    this.#logger = logger
    mkdirSync(dirname(path), { recursive: true })
    this.#stream = createWriteStream(path, { flags: 'a', mode: 0o600 })
    this.#stream.on('error', (err) => {
      if (!this.#failed) this.#logger.error('audit file cannot be written; records are not kept there', { path, error: err.message })
      this.#failed = err
    })
  }

  /** False when the file failed or the disk is too far behind. */
  get available(): boolean {
    return !this.#failed && !this.#closed && this.#stream.writableLength < MAX_PENDING_BYTES
  }

  /** Records lost because the file could not be written. */
  get dropped(): number {
    return this.#dropped
  }

  write(record: SpanRecord): boolean {
    if (this.#failed || this.#closed) {
      this.#dropped++
      return false
    }
    const line = JSON.stringify(record) + '\n'
    this.#lines.push(line)
    this.#pending += line.length
    if (this.#pending >= FLUSH_BYTES) this.#flush()
    else if (!this.#timer) {
      this.#timer = setTimeout(() => this.#flush(), FLUSH_DELAY_MS)
    }
    return true
  }

  #flush(): void {
    if (this.#timer) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    if (this.#lines.length === 0 || this.#failed) return
    const data = this.#lines.length === 1 ? this.#lines[0]! : this.#lines.join('')
    this.#lines = []
    this.#pending = 0
    this.#stream.write(data)
  }

  /** Writes what is pending and waits until it reached the file. */
  async flush(): Promise<void> {
    this.#flush()
    if (this.#failed || this.#stream.writableLength === 0) return
    await new Promise<void>((resolve) => {
      // An empty write's callback runs after everything queued before it.
      this.#stream.write('', () => resolve())
    })
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#flush()
      await new Promise<void>((resolve) => {
        if (this.#stream.destroyed) return resolve()
        this.#stream.end(() => resolve())
        this.#stream.once('error', () => resolve())
      })
    })()
    return this.#closed
  }
}
