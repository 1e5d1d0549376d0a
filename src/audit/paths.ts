/** Where the audit trail keeps its files, shared by the stage and `modelgate audit`. */
import { tmpdir } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'
import type { AuditConfig } from '../config/sections/audit.ts'

/** The spool directory when `audit.spool.dir` is empty. */
export function defaultSpoolDir(): string {
  return join(tmpdir(), 'modelgate-audit-spool')
}

/** A path from the configuration, relative to the configuration file's directory. */
export function configPath(baseDir: string, p: string): string {
  return isAbsolute(p) ? p : resolve(baseDir, p)
}

/** The spool directory and the file sink (if any) of a configuration. */
export function auditPaths(audit: AuditConfig, baseDir: string): { spoolDir: string; file: string | undefined } {
  return {
    spoolDir: audit.spool.dir ? configPath(baseDir, audit.spool.dir) : defaultSpoolDir(),
    file: audit.file ? configPath(baseDir, audit.file) : undefined,
  }
}
