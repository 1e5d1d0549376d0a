/**
 * How the container image launches modelgate, read from the Dockerfile's
 * final stage: its `ENV` settings and the node flags of its `ENTRYPOINT`.
 * Tests and benchmarks that measure modelgate's own process start it the same
 * way.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { REPO_ROOT } from '../../src/dev/envoy.ts'

export function imageLaunch(): { env: Record<string, string>; nodeFlags: string[] } {
  const dockerfile = readFileSync(join(REPO_ROOT, 'scripts/container/Dockerfile'), 'utf8')
  const final = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '))
  const env = Object.fromEntries([...final.matchAll(/^ENV ([A-Z_]+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]))
  const entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(final)![1]!) as string[]
  return { env, nodeFlags: entrypoint.filter((a) => a.startsWith('--')) }
}
