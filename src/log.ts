/**
 * A small structured logger: one JSON object per line on stderr. Callers pass
 * facts, never request content; `redactKeys` scrubs fields that might carry
 * secrets by name, as a second line of defence.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error'
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 }
const SECRET_KEY = /(authorization|token|secret|password|api[-_]?key|cookie|private)/i

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
  child(fields: Record<string, unknown>): Logger
}

export function createLogger(opts: { level?: Level; base?: Record<string, unknown>; write?: (line: string) => void } = {}): Logger {
  const min = ORDER[opts.level ?? ((process.env.MODELGATE_LOG_LEVEL as Level | undefined) ?? 'info')] ?? ORDER.info
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'))
  const base = opts.base ?? {}
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return
    const rec: Record<string, unknown> = { time: new Date().toISOString(), level, msg, ...base }
    if (fields) for (const [k, v] of Object.entries(fields)) rec[k] = SECRET_KEY.test(k) ? '[removed]' : v instanceof Error ? v.message : v
    write(JSON.stringify(rec))
  }
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ ...opts, base: { ...base, ...fields } }),
  }
}

/** A logger that drops everything (tests, benchmarks). */
export const silentLogger: Logger = createLogger({ level: 'error', write: () => {} })
