/**
 * A real redis-server for tests: on a free loopback port, without
 * persistence, in its own temporary directory. It stops when `stop()` is
 * called, when the test process exits, and by itself after `maxLifetimeMs`
 * (Redis's own shutdown, so no server outlives a crashed test). `kill()` and
 * `restart()` let tests take it away during traffic and bring it back on the
 * same port.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestRedis {
  readonly port: number
  readonly url: string
  /** SIGKILL: gone at once, as a crashed Redis would be. */
  kill(): Promise<void>
  /** Starts it again on the same port (empty: nothing was persisted). */
  restart(): Promise<void>
  stop(): Promise<void>
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1')
      c.once('connect', () => {
        c.end()
        resolve(true)
      })
      c.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > until) throw new Error(`redis-server did not listen on ${port} within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

export async function startRedis(opts: { maxLifetimeMs?: number; password?: string } = {}): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'modelgate-redis-'))
  const port = await freePort()
  const maxLifetimeMs = opts.maxLifetimeMs ?? 180_000
  let child: ChildProcess | undefined
  let guard: NodeJS.Timeout | undefined
  const onExit = () => child?.kill('SIGKILL')
  process.once('exit', onExit)

  const launch = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'yes', ...(opts.password ? ['--requirepass', opts.password] : [])]
    const c = spawn('redis-server', args, { stdio: 'ignore' })
    child = c
    clearTimeout(guard)
    guard = setTimeout(() => c.kill('SIGTERM'), maxLifetimeMs)
    guard.unref()
    await waitForPort(port, 5000)
  }
  const halt = async (signal: NodeJS.Signals) => {
    const c = child
    child = undefined
    if (!c || c.exitCode !== null || c.signalCode !== null) return
    const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()))
    c.kill(signal)
    await gone
  }
  await launch()
  const auth = opts.password ? `:${encodeURIComponent(opts.password)}@` : ''
  return {
    port,
    url: `redis://${auth}127.0.0.1:${port}`,
    kill: () => halt('SIGKILL'),
    restart: launch,
    async stop() {
      clearTimeout(guard)
      await halt('SIGTERM')
      process.removeListener('exit', onExit)
      await rm(dir, { recursive: true, force: true })
    },
  }
}
