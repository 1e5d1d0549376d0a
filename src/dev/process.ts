/**
 * Child processes of the local stack: stopping them, and making sure none
 * outlives the process that started it.
 */
import { execFileSync, type ChildProcess } from 'node:child_process'

/** Asks a child process to stop (SIGTERM) and kills it if it is still running after `graceMs`. */
export async function stopProcess(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const done = new Promise<void>((r) => child.once('exit', () => r()))
  child.kill('SIGTERM')
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await done
  clearTimeout(t)
}

/**
 * How `modelgate serve` runs in the container image (scripts/container/Dockerfile
 * sets the same): V8 semi-spaces of 8 MB instead of 32 (shorter young-generation
 * pauses and a smaller heap at the same CPU), and two malloc arenas instead of
 * one per thread. `modelgate start` and the benchmarks start it the same way.
 */
export const SERVE_NODE_OPTIONS: readonly string[] = ['--max-semi-space-size=8']
export const SERVE_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' }

/**
 * The environment variable `modelgate start` sets for the node processes it
 * starts (and the launcher in bin/ for the Node 24 it re-runs on): with `1`,
 * the process stops (as on SIGTERM) once its parent is gone, however the
 * parent ended — even by SIGKILL, when it had no chance to stop its children.
 */
export const EXIT_WITH_PARENT_ENV = 'MODELGATE_EXIT_WITH_PARENT'

/**
 * Watches the parent process and sends this process SIGTERM (so its own
 * shutdown runs) when the parent is gone: the kernel re-parents an orphan, so
 * its parent pid changes. The timer does not keep the process alive.
 */
export function exitWithParent(opts: { intervalMs?: number; onGone?: () => void } = {}): () => void {
  const parent = process.ppid
  const timer = setInterval(() => {
    if (process.ppid === parent && alive(parent)) return
    clearInterval(timer)
    if (opts.onGone) opts.onGone()
    else process.kill(process.pid, 'SIGTERM')
  }, opts.intervalMs ?? 250)
  timer.unref()
  return () => clearInterval(timer)
}

/** True while a process with this pid exists (signal 0 checks without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

let setprivPath: string | null | undefined

/**
 * The command prefix that makes a program receive `signal` when the process
 * that started it dies (Linux's parent-death signal, set by util-linux
 * `setpriv --pdeathsig`, which then execs the program under the same pid).
 * For programs that cannot watch their parent themselves, such as Envoy. Empty
 * where setpriv is not available; the starter still stops them on its way out.
 */
export function parentDeathPrefix(signal: 'TERM' | 'KILL' = 'TERM'): string[] {
  if (setprivPath === undefined) {
    try {
      execFileSync('setpriv', ['--help'], { stdio: 'ignore', timeout: 5000 })
      setprivPath = 'setpriv'
    } catch {
      setprivPath = null
    }
  }
  return setprivPath ? [setprivPath, `--pdeathsig=${signal}`, '--'] : []
}
