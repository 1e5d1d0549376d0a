/**
 * Configuration problems and the error that lists them, in a module of their
 * own: code that reports configuration problems (the redaction engine, also
 * in worker threads) needs them without loading the schema validator.
 */

/** One configuration problem, located as precisely as the source allows. */
export interface ConfigProblem {
  readonly file: string
  readonly line: number | undefined
  readonly column: number | undefined
  /** Dotted path of the field, e.g. `identity.trustDomains[0]`. */
  readonly field: string
  readonly message: string
}

export function formatProblem(p: ConfigProblem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.column ?? 1}`
  return `${where}: ${p.field || '(top level)'}: ${p.message}`
}

/** Thrown when the configuration is invalid; lists every problem found. */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[]
  constructor(problems: readonly ConfigProblem[]) {
    super(`invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` + problems.map((p) => '  ' + formatProblem(p)).join('\n'))
    this.name = 'ConfigError'
    this.problems = problems
  }
}
