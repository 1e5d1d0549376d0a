import type { ChildProcess } from 'node:child_process'

/** Asks a child process to stop (SIGTERM) and kills it if it is still running after `graceMs`. */
export async function stopProcess(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const done = new Promise<void>((r) => child.once('exit', () => r()))
  child.kill('SIGTERM')
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await done
  clearTimeout(t)
}
