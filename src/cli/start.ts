/**
 * `modelgate start`: the local stack. Generates a development CA and workload
 * SVIDs, starts the stand-in provider (a child process) and the stand-in MCP
 * server (in this process), modelgate and Envoy as child processes,
 * writes .modelgate/dev/stack.json, prints a request to try, and stops
 * everything on Ctrl-C / SIGTERM / SIGHUP (or when any part exits).
 *
 * No part outlives the stack: this process stops when its own parent is gone
 * (npm, a shell, a test), its node children do the same when it is gone (even
 * killed with SIGKILL), and Envoy, which cannot watch its parent, gets SIGTERM
 * from the kernel when this process dies (parent-death signal, where setpriv is
 * available) and SIGKILL from this process on its way out otherwise.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { createWriteStream, readFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join, relative, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { parse as parseYaml, stringify } from 'yaml'
import { configFromObject, loadConfigFile, resolveConfigPath } from '../config/config.ts'
import { localStackVars, REPO_ROOT, standInProviders, startEnvoy, type RunningEnvoy } from '../dev/envoy.ts'
import { compileCatalog } from '../providers/catalog.ts'
import { EXIT_WITH_PARENT_ENV, exitWithParent, parentDeathPrefix, SERVE_ENV, SERVE_NODE_OPTIONS, stopProcess } from '../dev/process.ts'
import { createDevPki, DEV_TRUST_DOMAIN } from '../dev/identities.ts'
import { StandInMcpServer } from '../dev/mcp-server.ts'
import { checkHealth } from './health.ts'
import { EXIT_USAGE, parseCommandLine, type CliIO } from './io.ts'

const HELP = `usage: modelgate start [--port 8443] [--dir .modelgate/dev] [--policies DIR] [--config FILE] [--redis]

Runs Envoy + modelgate + a stand-in model provider on this machine, with a
development CA and two workload identities. Writes <dir>/stack.json with the
listener URL, the CA, each identity's certificate, key and SPIFFE ID, and the
process ids. Ctrl-C stops everything.
  --port N        Envoy's mTLS listener port on 127.0.0.1 (default 8443; 0 picks a free one)
  --dir DIR       where certificates, configuration, logs and stack.json go (default .modelgate/dev)
  --policies DIR  Cedar policy directory (default: the file's policy.dir, else the policies/ shipped with modelgate)
  --config FILE   run modelgate with this modelgate.yaml; the stack fills in only what it owns:
                  the socket, the trust domain and the audit file (and the providers, when the
                  file has none)
  --redis         also start a local redis-server and point quotas.store at it
`

const MAIN = join(REPO_ROOT, 'src', 'cli', 'main.ts')

/** The local stack's providers: OpenAI, Anthropic and an Azure OpenAI resource, all served by the stand-in. */
export const LOCAL_PROVIDERS = ['openai', 'anthropic', 'azure'] as const

/**
 * The provider catalog of the local stack: each provider's key in a file of
 * `credentialDir` (`<provider>.key`), read and watched by modelgate; the
 * stand-in provider accepts exactly these keys.
 */
export function localCatalog(credentialDir: string): Record<string, unknown> {
  const creds = (name: string) => [{ name: 'default', file: join(credentialDir, `${name}.key`) }]
  return {
    openai: { kind: 'openai', upstream: 'https://api.openai.com', credentials: creds('openai') },
    anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com', credentials: creds('anthropic') },
    azure: { kind: 'azure-openai', upstream: 'https://modelgate-dev.openai.azure.com', credentials: creds('azure') },
  }
}

/** Fresh development keys, one per local provider: written where localCatalog reads them, and returned for the stand-in. */
export async function writeLocalKeys(credentialDir: string): Promise<Record<(typeof LOCAL_PROVIDERS)[number], string>> {
  await mkdir(credentialDir, { recursive: true, mode: 0o700 })
  const keys = Object.fromEntries(LOCAL_PROVIDERS.map((p) => [p, `mg-dev-${p}-${randomBytes(24).toString('base64url')}`])) as Record<(typeof LOCAL_PROVIDERS)[number], string>
  for (const p of LOCAL_PROVIDERS) await writeFile(join(credentialDir, `${p}.key`), keys[p] + '\n', { mode: 0o600 })
  return keys
}

/** The local stack's MCP server (the stand-in built with the MCP SDK's server), reached at /mcp/tools. */
export const LOCAL_MCP_SERVERS = {
  tools: { kind: 'mcp', upstream: 'http://mcp.tools.example.com/mcp', credentials: [{ name: 'none', none: true }] },
} as const

/** modelgate's configuration in the local stack (the Envoy benchmark runs the same). */
export function localModelgateConfig(o: { socket: string; policies: string; dir: string }): Record<string, unknown> {
  return {
    server: { listen: `unix://${o.socket}`, phaseTimeoutMs: 1500 },
    identity: { trustDomains: [DEV_TRUST_DOMAIN] },
    providers: { catalog: { ...localCatalog(join(o.dir, 'credentials')), ...LOCAL_MCP_SERVERS } },
    policy: { dir: o.policies, watch: true },
    audit: { file: join(o.dir, 'audit.jsonl'), spool: { dir: join(o.dir, 'audit-spool') } },
  }
}

/** A user's modelgate.yaml: validated, with its relative paths made absolute. */
interface UserConfig {
  readonly file: string
  readonly object: Record<string, unknown>
  /** The file's policy.dir, when it sets one. */
  readonly policyDir: string | undefined
}

/** Reads and validates a user's configuration (every problem listed), and rebases the paths it names onto its directory. */
export function readUserConfig(file: string): UserConfig {
  const cfg = loadConfigFile(file)
  const raw = (parseYaml(readFileSync(file, 'utf8')) ?? {}) as Record<string, any>
  const abs = (p: string | undefined) => (p ? resolveConfigPath(cfg, p) : p)
  const object = structuredClone(raw)
  if (object.policy?.dir) object.policy.dir = abs(object.policy.dir)
  if (object.policy?.shadowDir) object.policy.shadowDir = abs(object.policy.shadowDir)
  if (object.identity?.users?.jwksFile) object.identity.users.jwksFile = abs(object.identity.users.jwksFile)
  for (const entry of Object.values((object.providers?.catalog ?? {}) as Record<string, any>)) {
    for (const c of entry?.credentials ?? []) {
      if (c.file) c.file = abs(c.file)
      for (const k of ['certFile', 'keyFile', 'caFile']) if (c.oauth?.[k]) c.oauth[k] = abs(c.oauth[k])
    }
  }
  const redis = object.quotas?.redis
  if (redis?.passwordFile) redis.passwordFile = abs(redis.passwordFile)
  for (const k of ['caFile', 'certFile', 'keyFile']) if (redis?.tls?.[k]) redis.tls[k] = abs(redis.tls[k])
  return { file, object, policyDir: object.policy?.dir }
}

/**
 * The stack's configuration: the user's, with what the stack owns filled in
 * (the socket, the trust domain, the audit file and spool, the policy
 * directory; the providers only when the file has none), and with `--redis`
 * the quota store.
 */
export function stackConfig(local: Record<string, any>, user: UserConfig | undefined, redisUrl: string | undefined): Record<string, any> {
  const base: Record<string, any> = user ? structuredClone(user.object) : {}
  const out: Record<string, any> = {
    ...local,
    ...base,
    server: { ...local.server, ...base.server, listen: local.server.listen },
    identity: { ...base.identity, trustDomains: local.identity.trustDomains },
    providers: base.providers ?? local.providers,
    policy: { ...local.policy, ...base.policy, dir: local.policy.dir },
    audit: { ...base.audit, file: local.audit.file, spool: { ...base.audit?.spool, dir: local.audit.spool.dir } },
  }
  if (redisUrl) out.quotas = { ...base.quotas, store: 'redis', redis: { ...base.quotas?.redis, url: redisUrl } }
  return out
}

/** redis-server for the stack: loopback only, no persistence, stopped by the kernel if this process dies. */
function redisCommand(port: number, dir: string): [string, string[], { stdio: ['ignore', 'ignore', 'ignore'] }] {
  const [cmd, ...prefix] = [...parentDeathPrefix('TERM'), 'redis-server']
  return [cmd!, [...prefix, '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', join(dir, 'redis.log')], { stdio: ['ignore', 'ignore', 'ignore'] }]
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolvePort(port))
    })
  })
}

async function waitForPort(port: number, child: Child, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs
  for (;;) {
    if (child.exited) throw new Error(`${child.name} exited during start-up`)
    const open = await new Promise<boolean>((done) => {
      const c = connect(port, '127.0.0.1')
      c.once('connect', () => {
        c.end()
        done(true)
      })
      c.once('error', () => done(false))
    })
    if (open) return
    if (Date.now() > until) throw new Error(`${child.name} did not listen within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

interface Child {
  readonly name: string
  readonly proc: ChildProcess
  exited: boolean
}

export async function run(argv: string[], io: CliIO): Promise<number> {
  const parsed = parseCommandLine('start', HELP, io, {
    args: argv,
    options: { port: { type: 'string' }, dir: { type: 'string' }, policies: { type: 'string' }, config: { type: 'string' }, redis: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
  })
  if (typeof parsed === 'number') return parsed
  const { values } = parsed
  const port = Number(values.port ?? '8443')
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    io.stderr.write('modelgate start: --port must be an integer from 0 to 65535\n')
    return EXIT_USAGE
  }
  const dir = resolve(io.cwd, values.dir ?? '.modelgate/dev')
  // The user's configuration, validated before anything starts.
  let user: UserConfig | undefined
  if (values.config !== undefined) {
    try {
      user = readUserConfig(resolve(io.cwd, values.config))
    } catch (err) {
      io.stderr.write(`modelgate start: ${(err as Error).message}\n`)
      return 1
    }
  }
  const policies = resolve(io.cwd, values.policies ?? user?.policyDir ?? join(REPO_ROOT, 'policies'))
  const say = (msg: string) => io.stdout.write(`[modelgate] ${msg}\n`)
  const children: Child[] = []
  let envoy: RunningEnvoy | undefined
  let stopping = false
  const mcpServer = new StandInMcpServer()

  const stopAll = async () => {
    if (stopping) return
    stopping = true
    say('stopping')
    if (envoy) await envoy.stop()
    await mcpServer.close()
    for (const c of [...children].reverse()) await stopProcess(c.proc, 12_000)
  }

  const spawnChild = (name: string, args: string[], logFile: string): Child => {
    // modelgate itself runs with the settings of the container image.
    const serve = args[0] === 'serve'
    const proc = spawn(process.execPath, [...(serve ? SERVE_NODE_OPTIONS : []), MAIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...(serve ? SERVE_ENV : {}), ...io.env, [EXIT_WITH_PARENT_ENV]: '1' },
    })
    const log = createWriteStream(logFile, { flags: 'a' })
    proc.stderr!.pipe(log)
    const child: Child = { name, proc, exited: false }
    proc.once('exit', (code, signal) => {
      child.exited = true
      if (!stopping) {
        io.stderr.write(`[modelgate] ${name} exited unexpectedly (${signal ?? `code ${code}`}); see ${relative(io.cwd, logFile)}\n`)
        void stopAll().then(() => process.exit(1))
      }
    })
    children.push(child)
    return child
  }

  /** Resolves with the first stdout/stderr line matching `test`, or rejects on exit/timeout. */
  const waitForLine = (child: Child, stream: 'stdout' | 'stderr', test: (line: string) => boolean, timeoutMs = 20_000) =>
    new Promise<string>((resolveLine, reject) => {
      const rl = createInterface({ input: child.proc[stream]! })
      const timer = setTimeout(() => reject(new Error(`${child.name} did not start within ${timeoutMs} ms`)), timeoutMs)
      rl.on('line', (line) => {
        if (test(line)) {
          clearTimeout(timer)
          resolveLine(line)
        }
      })
      child.proc.once('exit', () => {
        clearTimeout(timer)
        reject(new Error(`${child.name} exited during start-up`))
      })
    })

  /** Resolves once modelgate answers SERVING on its health service; rejects if it exits or takes too long. */
  const waitForHealth = async (child: Child, address: string, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (child.exited) throw new Error(`${child.name} exited during start-up`)
      if ((await checkHealth(address, 500).catch(() => 'UNREACHABLE')) === 'SERVING') return
      await new Promise((r) => setTimeout(r, 200))
    }
    throw new Error(`${child.name} was not serving within ${timeoutMs} ms`)
  }

  const onSignal = () => void stopAll().then(() => process.exit(0))
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  process.once('SIGHUP', onSignal)
  // The parent (npm, a shell) is gone: nobody can press Ctrl-C any more.
  exitWithParent({ onGone: onSignal })
  // Last resort, whatever ends this process: nothing it started keeps running.
  process.once('exit', () => {
    for (const p of [envoy?.process, ...children.map((c) => c.proc)]) if (p && p.exitCode === null && p.signalCode === null) p.kill('SIGKILL')
  })

  try {
    await mkdir(dir, { recursive: true })
    await rm(join(dir, 'stack.json'), { force: true })
    say(`generating a development CA and workload SVIDs in ${relative(io.cwd, dir) || '.'}`)
    const pki = await createDevPki(dir)

    // Provider keys live in files modelgate watches; callers never see them. The stand-in accepts only these.
    const keys = await writeLocalKeys(join(dir, 'credentials'))
    const keysFile = join(dir, 'credentials', 'stand-in-keys.json')
    await writeFile(keysFile, JSON.stringify({ openai: [keys.openai], anthropic: [keys.anthropic], azure: [keys.azure] }), { mode: 0o600 })

    // The user's own providers are served by the stand-in too, which then checks no keys (theirs are not the stand-in's).
    const ownProviders = user?.object.providers !== undefined
    say('starting the stand-in model provider')
    const provider = spawnChild('provider', ['dev-provider', '--port', '0', ...(ownProviders ? [] : ['--keys', keysFile])], join(dir, 'provider.log'))
    const providerLine = await waitForLine(provider, 'stdout', (l) => l.startsWith('{'))
    const providerAddr = JSON.parse(providerLine) as { host: string; port: number; url: string }
    say('starting the stand-in MCP server')
    const mcpAddr = await mcpServer.listen()

    // Unix socket paths are limited to about 100 bytes; long --dir paths use the temp dir instead.
    let socket = join(dir, 'modelgate.sock')
    if (Buffer.byteLength(socket) > 100) socket = join(tmpdir(), `modelgate-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}.sock`)
    const configFile = join(dir, 'modelgate.yaml')
    let redisUrl: string | undefined
    if (values.redis) {
      say('starting redis-server')
      const redisPort = await freePort()
      const redis = spawn(...redisCommand(redisPort, dir))
      const child: Child = { name: 'redis-server', proc: redis, exited: false }
      redis.once('exit', (code, signal) => {
        child.exited = true
        if (!stopping) {
          io.stderr.write(`[modelgate] redis-server exited unexpectedly (${signal ?? `code ${code}`}); see ${relative(io.cwd, join(dir, 'redis.log'))}\n`)
          void stopAll().then(() => process.exit(1))
        }
      })
      children.push(child)
      await waitForPort(redisPort, child)
      redisUrl = `redis://127.0.0.1:${redisPort}`
    }
    const configObject = stackConfig(localModelgateConfig({ socket, policies, dir }), user, redisUrl)
    await writeFile(configFile, `# Generated by \`modelgate start\` for the local stack${user ? ` from ${user.file}` : ''}.\n` + stringify(configObject))
    say('starting modelgate')
    const mg = spawnChild('modelgate', ['serve', '--config', configFile], join(dir, 'modelgate.log'))
    await waitForHealth(mg, `unix://${socket}`)

    say('starting envoy')
    envoy = await startEnvoy({
      workDir: dir,
      vars: localStackVars({ pki, socket, listenPort: port }),
      providers: standInProviders(compileCatalog(configFromObject(configObject, configFile).providers), providerAddr, { host: '127.0.0.1', port: mcpAddr.port }),
    })
    const envoyLog = createWriteStream(join(dir, 'envoy.log'), { flags: 'a' })
    envoy.process.stdout!.pipe(envoyLog)
    envoy.process.stderr!.pipe(envoyLog)
    envoy.process.once('exit', (code) => {
      if (!stopping) {
        io.stderr.write(`[modelgate] envoy exited unexpectedly (code ${code}); see ${relative(io.cwd, join(dir, 'envoy.log'))}\n`)
        void stopAll().then(() => process.exit(1))
      }
    })

    const url = `https://localhost:${envoy.listenPort}`
    const stack = {
      listener: url,
      admin: envoy.adminUrl,
      ca: pki.ca.cert,
      identities: Object.fromEntries(Object.entries(pki.identities).map(([name, id]) => [name, { spiffeId: id.spiffeId, cert: id.cert, key: id.key }])),
      provider: providerAddr.url,
      mcp: `${url}/mcp/tools`,
      config: configFile,
      policies,
      processes: { envoy: envoy.process.pid, modelgate: mg.proc.pid, provider: provider.proc.pid, start: process.pid, ...(redisUrl ? { redis: children.find((c) => c.name === 'redis-server')?.proc.pid } : {}) },
      ...(redisUrl ? { redis: redisUrl } : {}),
      logs: { envoy: join(dir, 'envoy.log'), modelgate: join(dir, 'modelgate.log'), provider: join(dir, 'provider.log') },
      credentials: Object.fromEntries(LOCAL_PROVIDERS.map((p) => [p, join(dir, 'credentials', `${p}.key`)])),
      audit: join(dir, 'audit.jsonl'),
    }
    await writeFile(join(dir, 'stack.json'), JSON.stringify(stack, null, 2) + '\n')
    const rel = (p: string) => relative(io.cwd, p) || p
    const id = pki.identities.checkout
    say(`ready: ${url} (stack description in ${rel(join(dir, 'stack.json'))})`)
    io.stdout.write(
      [
        '',
        `Try it as ${id.spiffeId}:`,
        '',
        `  curl --cacert ${rel(pki.ca.cert)} --cert ${rel(id.cert)} --key ${rel(id.key)} \\`,
        `    ${url}/v1/chat/completions -H 'content-type: application/json' \\`,
        `    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'`,
        '',
        `No API key needed: modelgate removes any the caller sends and attaches the provider's own, from ${rel(join(dir, 'credentials'))}/.`,
        `An MCP server (built with the MCP SDK's server) is at ${url}/mcp/tools: point an MCP client at it with the same certificate.`,
        `Every decision is recorded in ${rel(join(dir, 'audit.jsonl'))}: npx modelgate audit show <request-id> ${rel(join(dir, 'audit.jsonl'))}`,
        '',
        'Press Ctrl-C to stop.',
        '',
      ].join('\n'),
    )
    await new Promise(() => {}) // until a signal arrives
    return 0
  } catch (err) {
    io.stderr.write(`[modelgate] start failed: ${(err as Error).message}\n`)
    await stopAll()
    return 1
  }
}
