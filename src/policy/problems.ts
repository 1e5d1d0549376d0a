/**
 * Problems found in a policy directory, located as `file:line:col`. Cedar
 * reports source locations as UTF-8 byte offsets; these helpers turn them into
 * 1-based lines and columns (columns count characters, as editors do).
 */
import { relative } from 'node:path'
import type { DetailedError } from '@cedar-policy/cedar-wasm/nodejs'

export interface PolicyProblem {
  readonly severity: 'error' | 'warning'
  /** Absolute path of the file, or the directory when no single file is at fault. */
  readonly file: string
  readonly line: number | undefined
  readonly column: number | undefined
  readonly message: string
  readonly help?: string | undefined
}

/** `file:line:col: error: message` (+ `  help: …`), with the path relative to `cwd` when given. */
export function formatProblem(p: PolicyProblem, cwd?: string): string {
  const file = cwd ? relative(cwd, p.file) || '.' : p.file
  const where = p.line === undefined ? file : `${file}:${p.line}:${p.column ?? 1}`
  return `${where}: ${p.severity}: ${p.message}${p.help ? `\n  help: ${p.help}` : ''}`
}

/** Thrown when a policy directory cannot be loaded; carries every problem found. */
export class PolicyLoadError extends Error {
  readonly problems: readonly PolicyProblem[]
  constructor(dir: string, problems: readonly PolicyProblem[]) {
    const errors = problems.filter((p) => p.severity === 'error')
    super(`policy set in ${dir} is invalid (${errors.length} error${errors.length === 1 ? '' : 's'}):\n` + errors.map((p) => '  ' + formatProblem(p)).join('\n'))
    this.name = 'PolicyLoadError'
    this.problems = problems
  }
}

/** Maps byte offsets in one text to lines and columns. */
export class SourceText {
  readonly text: string
  readonly bytes: Buffer
  readonly #lineStarts: number[]

  constructor(text: string) {
    this.text = text
    this.bytes = Buffer.from(text, 'utf8')
    const starts = [0]
    for (let i = 0; i < this.bytes.length; i++) if (this.bytes[i] === 0x0a) starts.push(i + 1)
    this.#lineStarts = starts
  }

  /** 1-based line and column of a byte offset (clamped to the text). */
  position(byteOffset: number): { line: number; column: number } {
    const off = Math.max(0, Math.min(byteOffset, this.bytes.length))
    let lo = 0
    let hi = this.#lineStarts.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.#lineStarts[mid]! <= off) lo = mid
      else hi = mid - 1
    }
    const lineStart = this.#lineStarts[lo]!
    const column = this.bytes.subarray(lineStart, off).toString('utf8').length + 1
    return { line: lo + 1, column }
  }

  /** Byte offset of a character offset. */
  byteOffset(charOffset: number): number {
    return Buffer.byteLength(this.text.slice(0, charOffset), 'utf8')
  }
}

/**
 * Problems from Cedar's detailed errors. `base` is the byte offset of the text
 * Cedar saw within `source` (for a policy validated on its own).
 */
export function problemsFromCedar(
  errors: readonly DetailedError[],
  at: { file: string; source?: SourceText | undefined; base?: number; fallbackOffset?: number | undefined },
  severity: 'error' | 'warning' = 'error',
): PolicyProblem[] {
  return errors.map((e) => {
    const loc = e.sourceLocations?.[0]
    const offset = loc ? (at.base ?? 0) + loc.start : at.fallbackOffset
    const pos = at.source && offset !== undefined ? at.source.position(offset) : undefined
    const labels = (e.sourceLocations ?? []).map((l) => l.label).filter((l): l is string => !!l)
    const help = [e.help, ...labels].filter((h): h is string => !!h).join('; ')
    return { severity: e.severity === 'warning' ? 'warning' : severity, file: at.file, line: pos?.line, column: pos?.column, message: e.message, help: help || undefined }
  })
}

/**
 * Drops repeats: Cedar's validator reports one error per action a policy may
 * apply to, with the same place and help and only the action name differing.
 */
export function dedupeProblems(problems: readonly PolicyProblem[]): PolicyProblem[] {
  const seen = new Set<string>()
  return problems.filter((p) => {
    const key = [p.severity, p.file, p.line, p.column, p.help ?? '', p.message.replace(/ for [A-Za-z0-9_:]*Action::"(?:[^"\\]|\\.)*"/g, '')].join('|')
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}
