/**
 * A credential read from a file, e.g. a Kubernetes Secret mounted as a
 * volume, and read again whenever it may have changed: `fs.watch` on its
 * directory (Kubernetes replaces a volume's files by pointing the `..data`
 * symlink at a new directory, which is a rename in that directory) and a
 * periodic read, for the changes a watch misses. Until a new value has been
 * read whole, the old one is served: a request never waits, and none fails
 * because of the swap.
 */
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import { validSecret } from './headers.ts'

/** How long a burst of change events settles before the file is read. */
const SETTLE_MS = 25
/** A read that finds no usable value is tried again this often, this many times, before the credential is unavailable. */
const RETRY_MS = 100
const RETRIES = 3

export interface FileCredentialOptions {
  readonly path: string
  /** Names the credential in log lines (`<provider>/<credential>`). */
  readonly label: string
  readonly logger: Logger
  readonly pollMs: number
}

/** The file's content as a secret: surrounding whitespace (a trailing newline) removed. */
function secretOf(text: string): string | undefined {
  const v = text.trim()
  return validSecret(v) ? v : undefined
}

export class FileCredential {
  readonly #opts: FileCredentialOptions
  #value: string | undefined
  /** Why there is no value (for the log and the audit trail's internal reason; never the content). */
  #problem: string | undefined
  #version = 1
  #watcher: FSWatcher | undefined
  #poll: NodeJS.Timeout | undefined
  #settle: NodeJS.Timeout | undefined
  #reading: Promise<void> | undefined
  #again = false
  #failures = 0
  #closed = false

  /** Reads the file now; throws an Error naming the path when it holds no usable credential. */
  constructor(opts: FileCredentialOptions) {
    this.#opts = opts
    let text: string
    try {
      text = readFileSync(opts.path, 'utf8')
    } catch (err) {
      throw new Error(`cannot read ${opts.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    const value = secretOf(text)
    if (value === undefined) throw new Error(`${opts.path} holds no usable credential (empty, or characters a header cannot carry)`)
    this.#value = value
  }

  /** Watches the file's directory and starts the periodic read. */
  start(): void {
    if (this.#closed) return
    try {
      this.#watcher = watch(dirname(this.#opts.path), { persistent: false }, () => this.#changed())
      this.#watcher.on('error', (err) => {
        this.#opts.logger.warn('credential file watch failed; the periodic read goes on', { credential: this.#opts.label, file: this.#opts.path, error: err.message })
        this.#watcher?.close()
        this.#watcher = undefined
      })
    } catch (err) {
      this.#opts.logger.warn('credential file cannot be watched; it is read periodically', { credential: this.#opts.label, file: this.#opts.path, error: (err as Error).message })
    }
    this.#poll = setInterval(() => void this.refresh(), this.#opts.pollMs)
    this.#poll.unref()
  }

  /** The current secret. Throws MG_CREDENTIAL_UNAVAILABLE when the file has held none for a while. */
  get(): string {
    if (this.#value !== undefined) return this.#value
    throw new GateError('MG_CREDENTIAL_UNAVAILABLE', { internal: `credential ${this.#opts.label}: ${this.#problem ?? 'no value'}` })
  }

  /** Counts the values read so far (1 at start): tests and the log tell a rotation by it. */
  get version(): number {
    return this.#version
  }

  #changed(): void {
    if (this.#closed) return
    clearTimeout(this.#settle)
    this.#settle = setTimeout(() => void this.refresh(), SETTLE_MS)
    this.#settle.unref()
  }

  /** Reads the file again (one read at a time; a change during a read reads once more). */
  refresh(): Promise<void> {
    if (this.#reading) {
      this.#again = true
      return this.#reading
    }
    this.#reading = this.#read().finally(() => {
      this.#reading = undefined
      if (this.#again && !this.#closed) {
        this.#again = false
        void this.refresh()
      }
    })
    return this.#reading
  }

  async #read(): Promise<void> {
    let value: string | undefined
    let problem: string | undefined
    try {
      value = secretOf(await readFile(this.#opts.path, 'utf8'))
      if (value === undefined) problem = 'the file holds no usable credential'
    } catch (err) {
      problem = `cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'})`
    }
    if (this.#closed) return
    if (value !== undefined) {
      this.#failures = 0
      if (this.#problem !== undefined) this.#opts.logger.info('credential file is usable again', { credential: this.#opts.label, file: this.#opts.path })
      this.#problem = undefined
      if (value !== this.#value) {
        this.#value = value
        this.#version++
        this.#opts.logger.info('credential file changed; new requests use the new value', { credential: this.#opts.label, file: this.#opts.path, version: this.#version })
      }
      return
    }
    // A writer that truncates before it writes, or a file being replaced: look again before giving up the old value.
    if (++this.#failures < RETRIES) {
      const retry = setTimeout(() => void this.refresh(), RETRY_MS)
      retry.unref()
      return
    }
    if (this.#value !== undefined) this.#opts.logger.error('credential file lost its value; requests that need it are refused', { credential: this.#opts.label, file: this.#opts.path, reason: problem })
    this.#value = undefined
    this.#problem = problem
  }

  close(): void {
    this.#closed = true
    this.#watcher?.close()
    this.#watcher = undefined
    clearInterval(this.#poll)
    clearTimeout(this.#settle)
  }
}
