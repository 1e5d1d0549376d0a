/**
 * `modelgate start` as a user runs it: a child process that brings up Envoy,
 * modelgate and the stand-in provider, describes them in stack.json, answers a
 * request made with the printed identity, and stops everything on SIGTERM.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { request } from 'node:https'
import { join } from 'node:path'
import { REPO_ROOT } from '../../src/dev/envoy.ts'

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('modelgate start brings up a working stack, describes it, and stops it on SIGTERM', async (t) => {
  const dir = t.testdir()
  const child = spawn(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'start', '--port', '0', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (b: Buffer) => (out += b))
  child.stderr.on('data', (b: Buffer) => (out += b))
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })

  const stackFile = join(dir, 'stack.json')
  for (let i = 0; i < 300 && !existsSync(stackFile); i++) await new Promise((r) => setTimeout(r, 100))
  t.ok(existsSync(stackFile), `stack.json written\n${out}`)
  const stack = JSON.parse(readFileSync(stackFile, 'utf8'))
  t.match(stack, {
    listener: /^https:\/\/localhost:\d+$/,
    ca: join(dir, 'ca.pem'),
    identities: {
      checkout: { spiffeId: 'spiffe://modelgate.local/ns/payments/sa/checkout', cert: String, key: String },
      notebook: { spiffeId: 'spiffe://modelgate.local/ns/research/sa/notebook', cert: String, key: String },
    },
    processes: { envoy: Number, modelgate: Number, provider: Number },
  })
  t.match(out, /curl --cacert .*ca\.pem --cert .*checkout\.pem --key .*checkout\.key/, 'prints a ready-to-paste curl command')

  const id = stack.identities.checkout
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello' }] })
  const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = request(
      `${stack.listener}/v1/chat/completions`,
      { method: 'POST', ca: readFileSync(stack.ca), cert: readFileSync(id.cert), key: readFileSync(id.key), headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = ''
        res.on('data', (c: Buffer) => (text += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      },
    )
    req.on('error', reject)
    req.end(body)
  })
  t.equal(answer.status, 200, answer.text)
  t.match(JSON.parse(answer.text), { choices: [{ message: { content: 'Stand-in reply. You said: Hello' } }] })

  child.kill('SIGTERM')
  t.equal(await exited, 0, 'exits cleanly')
  for (const [name, pid] of Object.entries(stack.processes as Record<string, number>)) t.notOk(alive(pid), `${name} (pid ${pid}) stopped`)
})
