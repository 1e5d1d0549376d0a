/**
 * Policy directories for tests that exercise something other than policy:
 * the shipped schema with a single permit-everything policy.
 */
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO_ROOT } from '../../src/dev/envoy.ts'

let dir: string | undefined

/** A directory with the shipped schema and `permit (principal, action, resource)`; made once per process. */
export function permitAllPolicyDir(): string {
  if (dir) return dir
  const d = mkdtempSync(join(tmpdir(), 'modelgate-permit-all-'))
  copyFileSync(join(REPO_ROOT, 'policies', 'modelgate.cedarschema'), join(d, 'modelgate.cedarschema'))
  writeFileSync(join(d, 'permit-all.cedar'), '@id("permit-all")\n@owner("tests")\npermit (principal, action, resource);\n')
  process.once('exit', () => rmSync(d, { recursive: true, force: true }))
  dir = d
  return d
}

let redactDir: string | undefined

/**
 * A directory with the shipped schema and a policy that permits every model
 * and tool call but never `send_unredacted`: every class found is redacted
 * (or refused where it cannot be), whoever calls.
 */
export function permitAllRedactedPolicyDir(): string {
  if (redactDir) return redactDir
  const d = mkdtempSync(join(tmpdir(), 'modelgate-permit-redacted-'))
  copyFileSync(join(REPO_ROOT, 'policies', 'modelgate.cedarschema'), join(d, 'modelgate.cedarschema'))
  writeFileSync(join(d, 'permit-redacted.cedar'), '@id("permit-all-redacted")\n@owner("tests")\npermit (principal, action, resource)\nunless { action == ModelGate::Action::"send_unredacted" };\n')
  process.once('exit', () => rmSync(d, { recursive: true, force: true }))
  redactDir = d
  return d
}
