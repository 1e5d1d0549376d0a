/**
 * The on-disk spool: records the collector has not accepted yet, kept as
 * JSON-lines segment files (`seg-<time>-<n>.jsonl`, one export batch each)
 * in one directory, oldest first. The first line of a segment is a header
 * with the resource the records belong to, so records spooled by an earlier
 * process are re-sent under that process's resource.
 *
 * Writes are synchronous appends (page cache, no fsync): they survive a crash
 * of modelgate, not of the machine. The spool is bounded: it is `full` at
 * `maxBytes` (new requests are refused in `deny` mode), and it takes nothing
 * beyond `hardLimitBytes` (the room for requests already admitted when it
 * filled up, and for the refusals themselves).
 *
 * One process owns a spool directory at a time (`spool.lock` holds its pid).
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from '../log.ts'
import { isSpanRecord, type RecordValue, type SpanRecord } from './record.ts'

export interface SegmentHeader {
  readonly spool: 1
  readonly resource: Readonly<Record<string, RecordValue>>
  readonly scope: { readonly name: string; readonly version?: string }
}

export interface SpoolOptions {
  readonly dir: string
  readonly maxBytes: number
  readonly hardLimitBytes: number
  /** Records per segment (one export request each). */
  readonly segmentRecords: number
  readonly header: SegmentHeader
  readonly logger: Logger
}

export interface SpoolSegment {
  readonly name: string
  readonly header: SegmentHeader | undefined
  readonly records: SpanRecord[]
  /** Lines that could not be read (a torn write after a crash). */
  readonly unreadable: number
}

const SEGMENT = /^seg-\d{13}-\d{6}\.jsonl$/
const SEGMENT_MAX_BYTES = 4 * 1024 * 1024
const LOCK = 'spool.lock'
/** Directories locked by this process (several spools in one process, as in tests, must not share one). */
const lockedHere = new Set<string>()

export class SpoolLockedError extends Error {
  constructor(dir: string, pid: number) {
    super(`audit spool ${dir} is in use by process ${pid}`)
    this.name = 'SpoolLockedError'
  }
}

export class Spool {
  readonly dir: string
  readonly #opts: SpoolOptions
  readonly #headerLine: string
  /** Closed segments, oldest first, with their sizes. */
  readonly #closed: { name: string; bytes: number }[] = []
  #open: { name: string; fd: number; bytes: number; records: number } | undefined
  /** Lines appended to the open segment but not yet written: one write per append call and segment. */
  #pending: string[] = []
  #pendingBytes = 0
  #pendingRecords = 0
  /** Records written when a segment rolled during the current append. */
  #rolled = 0
  #bytes = 0
  #counter = 0
  #lastStamp = 0
  #released = false

  constructor(opts: SpoolOptions) {
    this.#opts = opts
    this.dir = opts.dir
    this.#headerLine = JSON.stringify(opts.header) + '\n'
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 })
    this.#lock()
    for (const name of readdirSync(opts.dir).filter((n) => SEGMENT.test(n)).sort()) {
      const bytes = statSync(join(opts.dir, name)).size
      this.#closed.push({ name, bytes })
      this.#bytes += bytes
    }
  }

  /** Bytes on disk. */
  get bytes(): number {
    return this.#bytes
  }

  /** Segments waiting (the open one included when it holds records). */
  get segments(): number {
    return this.#closed.length + (this.#open && this.#open.records > 0 ? 1 : 0)
  }

  get empty(): boolean {
    return this.segments === 0
  }

  /** At or over `maxBytes`: in `deny` mode no new request is admitted. */
  get full(): boolean {
    return this.#bytes >= this.#opts.maxBytes
  }

  /**
   * Appends records in order; returns how many were written. Records that
   * would take the spool past its hard limit are not written.
   */
  append(records: readonly SpanRecord[]): number {
    if (this.#released) throw new Error('audit spool is closed')
    this.#rolled = 0
    let written = 0
    try {
      for (const r of records) {
        const line = JSON.stringify(r) + '\n'
        const size = Buffer.byteLength(line)
        const open = this.#segmentFor(size)
        if (!open) break
        this.#pending.push(line)
        this.#pendingBytes += size
        this.#pendingRecords++
        open.bytes += size
        open.records++
        this.#bytes += size
      }
    } finally {
      // Written before append returns, as before, but in one system call per segment instead of one per record.
      written = this.#rolled + this.#writePending()
    }
    return written
  }

  /** Writes the gathered lines to the open segment; returns how many records they held. On failure they are not counted. */
  #writePending(): number {
    const o = this.#open
    const lines = this.#pending
    const n = this.#pendingRecords
    const bytes = this.#pendingBytes
    this.#pending = []
    this.#pendingBytes = 0
    this.#pendingRecords = 0
    if (n === 0 || !o) return 0
    try {
      writeSync(o.fd, lines.length === 1 ? lines[0]! : lines.join(''))
    } catch (err) {
      o.bytes -= bytes
      o.records -= n
      this.#bytes -= bytes
      throw err
    }
    return n
  }

  /** Reads the oldest segment (closing the open one first when it is the only one). */
  oldest(): SpoolSegment | undefined {
    if (this.#closed.length === 0) this.#roll()
    const seg = this.#closed[0]
    if (!seg) return undefined
    let text: string
    try {
      text = readFileSync(join(this.dir, seg.name), 'utf8')
    } catch (err) {
      this.#opts.logger.error('audit spool segment unreadable', { segment: seg.name, error: (err as Error).message })
      return { name: seg.name, header: undefined, records: [], unreadable: 1 }
    }
    let header: SegmentHeader | undefined
    const records: SpanRecord[] = []
    let unreadable = 0
    for (const line of text.split('\n')) {
      if (!line) continue
      let v: unknown
      try {
        v = JSON.parse(line)
      } catch {
        unreadable++
        continue
      }
      if (isSpanRecord(v)) records.push(v)
      else if (v && typeof v === 'object' && (v as { spool?: unknown }).spool === 1) header = v as SegmentHeader
      else unreadable++
    }
    return { name: seg.name, header, records, unreadable }
  }

  /** Deletes a segment once the collector has it. */
  remove(name: string): void {
    const i = this.#closed.findIndex((s) => s.name === name)
    if (i < 0) return
    const [seg] = this.#closed.splice(i, 1)
    rmSync(join(this.dir, name), { force: true })
    this.#bytes -= seg!.bytes
  }

  /** Closes the open segment and releases the directory. Segments stay for the next process. */
  close(): void {
    if (this.#released) return
    this.#roll()
    this.#released = true
    lockedHere.delete(this.dir)
    try {
      const pid = Number(readFileSync(join(this.dir, LOCK), 'utf8'))
      if (pid === process.pid) rmSync(join(this.dir, LOCK), { force: true })
    } catch {
      /* already gone */
    }
  }

  #segmentFor(size: number): { fd: number; bytes: number; records: number } | undefined {
    if (this.#bytes + size > this.#opts.hardLimitBytes) return undefined
    const o = this.#open
    if (o && o.records > 0 && (o.records >= this.#opts.segmentRecords || o.bytes + size > SEGMENT_MAX_BYTES)) this.#roll()
    if (!this.#open) {
      const headerSize = Buffer.byteLength(this.#headerLine)
      if (this.#bytes + headerSize + size > this.#opts.hardLimitBytes) return undefined
      const name = this.#nextName()
      const fd = openSync(join(this.dir, name), 'wx', 0o600)
      writeSync(fd, this.#headerLine)
      this.#bytes += headerSize
      this.#open = { name, fd, bytes: headerSize, records: 0 }
    }
    return this.#open
  }

  #roll(): void {
    const o = this.#open
    if (!o) return
    this.#rolled += this.#writePending()
    closeSync(o.fd)
    this.#open = undefined
    if (o.records === 0) {
      rmSync(join(this.dir, o.name), { force: true })
      this.#bytes -= o.bytes
      return
    }
    this.#closed.push({ name: o.name, bytes: o.bytes })
  }

  #nextName(): string {
    // Names sort in creation order: the time, then a counter within one millisecond.
    let stamp = Date.now()
    const last = this.#closed.at(-1)?.name
    const lastStamp = last ? Number(last.slice(4, 17)) : 0
    stamp = Math.max(stamp, lastStamp, this.#lastStamp)
    if (stamp !== this.#lastStamp) this.#counter = 0
    this.#lastStamp = stamp
    for (let attempt = 0; attempt < 1000; attempt++) {
      if (this.#counter > 999999) {
        this.#lastStamp = ++stamp
        this.#counter = 0
      }
      const name = `seg-${String(stamp).padStart(13, '0')}-${String(this.#counter++).padStart(6, '0')}.jsonl`
      if (!existsSync(join(this.dir, name))) return name
    }
    throw new Error(`cannot name a new segment in ${this.dir}`)
  }

  #lock(): void {
    const file = join(this.dir, LOCK)
    if (lockedHere.has(this.dir)) throw new SpoolLockedError(this.dir, process.pid)
    try {
      closeSync(openSync(file, 'wx', 0o600))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      let pid = 0
      try {
        pid = Number(readFileSync(file, 'utf8').trim())
      } catch {
        /* unreadable: treat as stale */
      }
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) throw new SpoolLockedError(this.dir, pid)
      // A stale lock from a process that is gone: take it over.
    }
    writeFileSync(file, String(process.pid), { mode: 0o600 })
    lockedHere.add(this.dir)
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
