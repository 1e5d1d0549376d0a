/**
 * The file sink: every record appended as one JSON line to a local file, in
 * the order records end. `modelgate audit` reads these files directly. Lines
 * written within one event-loop turn go out in a single write.
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

export class FileSink {
  readonly path: string
  readonly #logger: Logger
  readonly #stream: WriteStream
  #lines: string[] = []
  #scheduled = false
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
    this.#lines.push(JSON.stringify(record) + '\n')
    if (!this.#scheduled) {
      this.#scheduled = true
      setImmediate(() => this.#flush())
    }
    return true
  }

  #flush(): void {
    this.#scheduled = false
    if (this.#lines.length === 0 || this.#failed) return
    const data = this.#lines.join('')
    this.#lines = []
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
