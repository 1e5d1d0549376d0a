/**
 * The local stack as the README tells a user to run it: `npm start` brings up
 * Envoy, modelgate and the stand-in provider, describes them in stack.json and
 * answers the README's request with the generated identity — every time it is
 * run in the same directory, not just the first — and SIGTERM to npm leaves no
 * process behind. No part outlives the stack when its starter is killed
 * outright, and `npx modelgate` runs on the pinned Node 24 whatever `node` is
 * first on PATH.
 */
import t, { type Test } from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { delimiter, join } from 'node:path'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { alive } from '../../src/dev/process.ts'

interface StackFile {
  listener: string
  ca: string
  identities: Record<string, { spiffeId: string; cert: string; key: string }>
  processes: Record<string, number>
  logs: Record<string, string>
  /** The providers' key files modelgate reads (the stand-in accepts only these keys). */
  credentials: Record<string, string>
}

/** The README's request: the checkout identity's certificate (or another's), over https, to the listener. */
async function readmeRequest(stack: StackFile, identity = 'checkout'): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }> {
  const id = stack.identities[identity]!
  const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello' }] })
  return new Promise((resolve, reject) => {
    const req = request(
      `${stack.listener}/v1/chat/completions`,
      { method: 'POST', ca: readFileSync(stack.ca), cert: readFileSync(id.cert), key: readFileSync(id.key), headers: { 'content-type': 'application/json' }, timeout: 15_000 },
      (res) => {
        let text = ''
        res.on('data', (c: Buffer) => (text += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }))
      },
    )
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end(body)
  })
}

/** Output of a child, and a promise for its exit. */
function watch(child: ChildProcess): { out: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  let out = ''
  child.stdout?.on('data', (b: Buffer) => (out += b))
  child.stderr?.on('data', (b: Buffer) => (out += b))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })))
  return { out: () => out, exited }
}

async function until(test: () => boolean, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (test()) return true
    await new Promise((r) => setTimeout(r, intervalMs))
  }
  return test()
}

/** Waits for the "ready" line of this run, then reads the stack.json it wrote. */
async function ready(t: Test, w: ReturnType<typeof watch>, dir: string): Promise<StackFile | undefined> {
  const ok = await until(() => /\[modelgate\] ready: /.test(w.out()), 60_000)
  if (!ok) {
    t.fail(`the stack did not report ready:\n${w.out().slice(-3000)}`)
    return undefined
  }
  t.pass('the stack reports ready')
  return JSON.parse(readFileSync(join(dir, 'stack.json'), 'utf8')) as StackFile
}

t.test('npm start works every time in the same directory, and SIGTERM to npm stops every process of the stack', async (t) => {
  const dir = t.testdir()
  const seen = new Set<number>()
  for (let run = 1; run <= 3; run++) {
    const npm = spawn('npm', ['start', '--', '--port', '0', '--dir', dir], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    const w = watch(npm)
    t.teardown(() => {
      if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL')
    })
    const stack = await ready(t, w, dir)
    if (!stack) return
    t.match(stack.processes, { envoy: Number, modelgate: Number, provider: Number, start: Number }, `run ${run}: stack.json names every process`)
    t.notOk(seen.has(stack.processes.start!), `run ${run}: stack.json is this run's`)
    seen.add(stack.processes.start!)
    t.teardown(() => {
      for (const pid of Object.values(stack.processes)) if (alive(pid)) process.kill(pid, 'SIGKILL')
    })
    const answer = await readmeRequest(stack)
    t.equal(answer.status, 200, `run ${run}: the README request is answered\n${answer.text}`)
    t.match(JSON.parse(answer.text), { choices: [{ message: { content: 'Stand-in reply. You said: Hello' } }] })

    npm.kill('SIGTERM')
    const end = await Promise.race([w.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 30_000))])
    t.ok(end, `run ${run}: npm ended after SIGTERM`)
    for (const [name, pid] of Object.entries(stack.processes)) {
      t.ok(await until(() => !alive(pid), 10_000), `run ${run}: ${name} (pid ${pid}) stopped`)
    }
    // The provider keys are in their files only: not in what the CLI printed, stack.json, or the logs.
    const keys = Object.values(stack.credentials).map((f) => readFileSync(f, 'utf8').trim())
    t.equal(keys.length, 3, `run ${run}: a key file per local provider`)
    const written = { 'the CLI output': w.out(), 'stack.json': readFileSync(join(dir, 'stack.json'), 'utf8'), ...Object.fromEntries(Object.entries(stack.logs).map(([name, f]) => [`${name}.log`, readFileSync(f, 'utf8')])) }
    for (const [where, text] of Object.entries(written)) t.notOk(keys.some((k) => text.includes(k)), `run ${run}: no provider key in ${where}`)
  }
})

t.test('start --config runs the user\'s modelgate.yaml and --redis its quotas on a local redis-server: the README\'s fourth request is refused, quota show reads the counter, SIGTERM stops redis-server too', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'my-modelgate.yaml')
  writeFileSync(
    file,
    [
      '# trustDomains, the socket and the audit file are the stack\'s own',
      'identity: { trustDomains: [prod.example.com] }',
      'quotas:',
      '  rules:',
      '    - name: notebook-rpm',
      '      match: { identity: ["spiffe://modelgate.local/ns/research/sa/notebook"] }',
      '      limit: { requests: 3 }',
      '      window: minute',
      '',
    ].join('\n'),
  )
  const stackDir = join(dir, 'stack')
  const start = spawn(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'start', '--port', '0', '--dir', stackDir, '--config', file, '--redis'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const w = watch(start)
  t.teardown(() => {
    if (start.exitCode === null && start.signalCode === null) start.kill('SIGKILL')
  })
  const stack = await ready(t, w, stackDir)
  if (!stack) return
  t.match(stack.processes, { envoy: Number, modelgate: Number, provider: Number, redis: Number, start: Number })
  t.teardown(() => {
    for (const pid of Object.values(stack.processes)) if (alive(pid)) process.kill(pid, 'SIGKILL')
  })
  for (let i = 0; i < 3; i++) t.equal((await readmeRequest(stack, 'notebook')).status, 200)
  const fourth = await readmeRequest(stack, 'notebook')
  t.equal(fourth.status, 429)
  t.equal(fourth.headers['ratelimit-policy'], '"notebook-rpm";q=3;w=60')
  t.match(JSON.parse(fourth.text), { error: { code: 'MG_QUOTA_EXCEEDED', rule: 'notebook-rpm' } })
  t.equal((await readmeRequest(stack, 'checkout')).status, 200, 'the rule is the notebook\'s only')

  const show = spawnSync(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'quota', 'show', '--config', join(stackDir, 'modelgate.yaml')], { encoding: 'utf8', timeout: 20_000 })
  t.equal(show.status, 0, show.stderr)
  t.match(show.stdout, /^notebook-rpm\s+requests\s+minute\s+3\s+3\s+0\s+\(all\)$/m)

  start.kill('SIGTERM')
  const end = await Promise.race([w.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 30_000))])
  t.ok(end, 'start ended after SIGTERM')
  for (const [name, pid] of Object.entries(stack.processes)) t.ok(await until(() => !alive(pid), 10_000), `${name} (pid ${pid}) stopped`)
})

t.test('when the start process is killed outright, Envoy, modelgate and the provider stop by themselves', async (t) => {
  const dir = t.testdir()
  const start = spawn(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'start', '--port', '0', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] })
  const w = watch(start)
  const stack = await ready(t, w, dir)
  if (!stack) {
    start.kill('SIGKILL')
    return
  }
  t.teardown(() => {
    for (const pid of Object.values(stack.processes)) if (alive(pid)) process.kill(pid, 'SIGKILL')
  })
  start.kill('SIGKILL')
  await w.exited
  for (const name of ['envoy', 'modelgate', 'provider']) {
    const pid = stack.processes[name]!
    t.ok(await until(() => !alive(pid), 15_000), `${name} (pid ${pid}) stopped without its parent`)
  }
})

t.test('`npx modelgate` and bin/modelgate.js run on the pinned Node 24 whatever node is first on PATH', async (t) => {
  // The PATH of a user's shell: without the checkout's node_modules/.bin (npm scripts add it).
  const PATH = (process.env.PATH ?? '').split(delimiter).filter((p) => !p.startsWith(join(REPO_ROOT, 'node_modules'))).join(delimiter)
  const env = { ...process.env, PATH }
  const first = spawnSync('node', ['--version'], { env, encoding: 'utf8', timeout: 10_000 })
  const firstNode = first.status === 0 ? first.stdout.trim() : '(none)'
  const bin = spawnSync('node', [join(REPO_ROOT, 'bin/modelgate.js'), 'version'], { env, encoding: 'utf8', timeout: 30_000 })
  t.equal(bin.status, 0, bin.stderr)
  t.match(bin.stdout, /^modelgate \d+\.\d+\.\d+ \(Node\.js v24\.\d+\.\d+\)\n$/, `started by node ${firstNode}, runs on Node 24`)
  const policy = spawnSync('node', [join(REPO_ROOT, 'bin/modelgate.js'), 'policy', 'validate', '--dir', 'policies'], { cwd: REPO_ROOT, env, encoding: 'utf8', timeout: 60_000 })
  t.equal(policy.status, 0, `a README command works (node ${firstNode})\n${policy.stderr}`)
  t.match(policy.stdout, /valid: \d+ policies/)
  const npx = spawnSync('npx', ['--no', 'modelgate', 'version'], { cwd: REPO_ROOT, env, encoding: 'utf8', timeout: 60_000 })
  t.equal(npx.status, 0, npx.stderr)
  t.match(npx.stdout, /^modelgate \d+\.\d+\.\d+ \(Node\.js v24\.\d+\.\d+\)\n$/)
})
