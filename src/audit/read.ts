/**
 * Reading audit records back, for `modelgate audit`: the JSON-lines file sink,
 * a spool directory (segment files), or an OTLP/JSON export (a collector's file
 * exporter writes one ExportTraceServiceRequest per line; a single pretty-
 * printed document works too). Files ending in .gz are decompressed. Records
 * are streamed to a callback, so files of any size are read in bounded memory.
 */
import { createReadStream, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { gunzipSync, createGunzip } from 'node:zlib'
import { isSpanRecord, recordsFromOtlpJson, type SpanRecord } from './record.ts'

export interface SourceProblem {
  readonly file: string
  readonly line: number
  readonly message: string
}

export interface ReadSummary {
  readonly files: readonly string[]
  readonly records: number
  readonly problems: readonly SourceProblem[]
}

export interface RecordOrigin {
  readonly file: string
  readonly line: number
}

const DATA_FILE = /\.(jsonl|ndjson|json)(\.gz)?$/
/** A whole-document fallback reads the file at once; beyond this size it is refused. */
const MAX_DOCUMENT_BYTES = 512 * 1024 * 1024

/** Files named by `paths`: files as given, directories expanded to their data files (sorted, not recursive). */
export function expandSources(paths: readonly string[]): { files: string[]; problems: SourceProblem[] } {
  const files: string[] = []
  const problems: SourceProblem[] = []
  for (const p of paths) {
    let st
    try {
      st = statSync(p)
    } catch (err) {
      problems.push({ file: p, line: 0, message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` })
      continue
    }
    if (st.isDirectory()) {
      const names = readdirSync(p).filter((n) => DATA_FILE.test(n)).sort()
      if (names.length === 0) problems.push({ file: p, line: 0, message: 'directory holds no .jsonl/.json files' })
      for (const n of names) files.push(join(p, n))
    } else files.push(p)
  }
  return { files, problems }
}

/** Streams every record found in `paths` to `onRecord`. */
export async function readRecords(paths: readonly string[], onRecord: (r: SpanRecord, origin: RecordOrigin) => void): Promise<ReadSummary> {
  const { files, problems } = expandSources(paths)
  let records = 0
  const emit = (r: SpanRecord, origin: RecordOrigin) => {
    records++
    onRecord(r, origin)
  }
  for (const file of files) await readFile(file, emit, problems)
  return { files, records, problems }
}

async function readFile(file: string, emit: (r: SpanRecord, o: RecordOrigin) => void, problems: SourceProblem[]): Promise<void> {
  const gz = file.endsWith('.gz')
  const raw = createReadStream(file)
  const input = gz ? raw.pipe(createGunzip()) : raw
  const lines = createInterface({ input, crlfDelay: Infinity })
  let n = 0
  let firstLineFailed = false
  try {
    for await (const line of lines) {
      n++
      const text = line.trim()
      if (!text) continue
      let v: unknown
      try {
        v = JSON.parse(text)
      } catch {
        if (n === 1) {
          // Not JSON lines: perhaps one pretty-printed document.
          firstLineFailed = true
          break
        }
        problems.push({ file, line: n, message: 'not JSON' })
        continue
      }
      take(v, file, n, emit, problems)
    }
  } catch (err) {
    problems.push({ file, line: n, message: `read failed: ${(err as Error).message}` })
    return
  } finally {
    lines.close()
    raw.destroy()
  }
  if (!firstLineFailed) return
  let doc: unknown
  try {
    if (statSync(file).size > MAX_DOCUMENT_BYTES) throw new Error(`larger than ${MAX_DOCUMENT_BYTES} bytes and not JSON lines`)
    const buf = readFileSync(file)
    doc = JSON.parse((gz ? gunzipSync(buf) : buf).toString('utf8'))
  } catch (err) {
    problems.push({ file, line: 1, message: `neither JSON lines nor one JSON document: ${(err as Error).message.slice(0, 120)}` })
    return
  }
  take(doc, file, 1, emit, problems)
}

function take(v: unknown, file: string, line: number, emit: (r: SpanRecord, o: RecordOrigin) => void, problems: SourceProblem[]): void {
  if (Array.isArray(v)) {
    for (const item of v) take(item, file, line, emit, problems)
    return
  }
  if (isSpanRecord(v)) return emit(v, { file, line })
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>
    if (Array.isArray(o.resourceSpans)) {
      for (const r of recordsFromOtlpJson(o)) emit(r, { file, line })
      return
    }
    // Spool segment headers and OTLP metrics/logs lines are not span records.
    if (o.spool === 1 || Array.isArray(o.resourceMetrics) || Array.isArray(o.resourceLogs)) return
  }
  problems.push({ file, line, message: 'not an audit record or OTLP/JSON trace export' })
}
