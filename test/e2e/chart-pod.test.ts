/**
 * The pod the chart renders, run on this machine: `helm template` with the
 * minimal and the production values; the Envoy bootstrap, its SDS files,
 * modelgate.yaml and the policy ConfigMap exactly as rendered, written where
 * the pod mounts them (under a scratch root); the real Envoy 1.40 and
 * modelgate (startApp, in this process) started on them; an allowed and a
 * denied request sent through with the official SDKs.
 *
 * What is changed, and only that:
 * - paths: /etc/envoy/…, /etc/modelgate/…, /run/modelgate/…, /var/lib/modelgate/…
 *   and /etc/ssl/certs/… gain the scratch root as a prefix (files in place of mounts);
 * - addresses: the workload, readiness and admin listeners (and the envoy_admin
 *   cluster, which is the admin) move to free loopback ports; provider clusters
 *   point at 127.0.0.1 (a TLS front of the stand-in provider for TLS providers,
 *   the stand-in itself for plain ones); server.metricsListen binds 127.0.0.1:0;
 * - files: the development PKI (test/helpers/pki.ts) stands in for the SVID
 *   volume (tls.crt, tls.key, ca.crt), the trust bundle and the system CA file
 *   (which signs the TLS front's certificate for the providers' host names);
 *   the provider credentials are written where the rendered credentials
 *   volume puts them, from the chart's own Secret or from test keys standing
 *   in for the Secrets the values name.
 * Values: config.identity.trustDomains is the development trust domain; the
 * minimal values get a key per provider as a value (the chart's Secret).
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createNetServer, connect, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createServer as createTlsServer } from 'node:tls'
import { promisify } from 'node:util'
import Anthropic from '@anthropic-ai/sdk'
import { Redis } from 'ioredis'
import OpenAI from 'openai'
import { Agent, fetch as undiciFetch } from 'undici'
import { parse, stringify } from 'yaml'
import { startApp, type App } from '../../src/app.ts'
import { loadConfigFile } from '../../src/config/config.ts'
import { REPO_ROOT, startEnvoy, type RunningEnvoy } from '../../src/dev/envoy.ts'
import { DEV_TRUST_DOMAIN } from '../../src/dev/identities.ts'
import { issueCertificate } from '../../src/dev/pki.ts'
import { StandInProvider } from '../../src/dev/provider.ts'
import { createLogger } from '../../src/log.ts'
import { configFiles, container, find, podSpec, render, valueSets, type Manifest } from '../helpers/chart.ts'
import { sharedTestPki } from '../helpers/pki.ts'
import { startRedis, type TestRedis } from '../helpers/redis.ts'

const run = promisify(execFile)
const POD_PATHS = /\/(etc\/envoy|etc\/modelgate|run\/modelgate|var\/lib\/modelgate|etc\/ssl\/certs)\b/g

async function freePort(): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

const { pki, clients } = await sharedTestPki()
const scratch = mkdtempSync(join(tmpdir(), 'mgpod-'))
process.once('exit', () => rmSync(scratch, { recursive: true, force: true }))

/** The keys of the Secrets the values name (the production example), and the ones given as values. */
const SECRETS: Record<string, Record<string, string>> = {
  'openai-api-key': { 'api-key': 'sk-proj-chart-openai-default-000001' },
  'openai-payments-key': { 'api-key': 'sk-proj-chart-openai-payments-000002' },
  'anthropic-api-key': { 'api-key': 'sk-ant-chart-anthropic-default-000003' },
}
/** The password in the Redis Secret the production values name. */
const REDIS_PASSWORD = 'chart-redis-password-000006'
const VALUE_KEYS = { openai: 'sk-proj-chart-openai-value-000004', anthropic: 'sk-ant-chart-anthropic-value-000005' }
const KEY_VALUES = Object.entries(VALUE_KEYS).flatMap(([p, key]) => ['--set', `providers.${p}.credentials[0].name=default`, '--set', `providers.${p}.credentials[0].value=${key}`])

// The providers' side: the stand-in, accepting only those keys, and a TLS front holding a certificate for the providers' host names.
const provider = new StandInProvider({
  keys: {
    openai: [SECRETS['openai-api-key']!['api-key']!, SECRETS['openai-payments-key']!['api-key']!, VALUE_KEYS.openai],
    anthropic: [SECRETS['anthropic-api-key']!['api-key']!, VALUE_KEYS.anthropic],
  },
})
const upstream = await provider.listen()
const frontCert = await issueCertificate(join(scratch, 'front'), pki.ca, { name: 'providers', dns: ['api.openai.com', 'api.anthropic.com'] })
const sockets = new Set<Socket>()
const front = createTlsServer({ cert: readFileSync(frontCert.cert), key: readFileSync(frontCert.key) }, (tlsSocket) => {
  const plain = connect(upstream.port, '127.0.0.1')
  for (const s of [tlsSocket, plain]) {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
    s.on('error', () => {
      tlsSocket.destroy()
      plain.destroy()
    })
  }
  tlsSocket.pipe(plain).pipe(tlsSocket)
})
await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve))
const frontPort = (front.address() as AddressInfo).port
t.teardown(async () => {
  for (const s of sockets) s.destroy()
  await new Promise<void>((resolve) => front.close(() => resolve()))
  await provider.close()
})

/** Writes a file under the scratch root at its pod path. */
function place(root: string, podPath: string, content: string | Buffer): void {
  const file = join(root, podPath)
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, content)
}

interface RunningPod {
  readonly app: App
  readonly envoy: RunningEnvoy
  readonly url: string
  readonly readinessUrl: string
  readonly root: string
  readonly docs: Manifest[]
  /** The shared store, when the values name one. */
  readonly redis: TestRedis | undefined
  stop(): Promise<void>
}

/** Renders the chart with `args` and runs the pod's two halves from what was rendered. */
async function runPod(name: string, args: string[]): Promise<RunningPod> {
  const docs = await render([...args, '--set', `config.identity.trustDomains={${DEV_TRUST_DOMAIN}}`])
  const root = join(scratch, name)
  const files = configFiles(docs)
  const atRoot = (text: string) => text.replace(POD_PATHS, `${root}/$1`)

  // Envoy: the bootstrap and SDS files; listeners and the admin on free loopback ports; providers here.
  const boot = parse(atRoot(files['envoy.yaml']!)) as Manifest
  const [listen, ready, admin] = [await freePort(), await freePort(), await freePort()]
  boot.admin.address.socket_address = { address: '127.0.0.1', port_value: admin }
  for (const l of boot.static_resources.listeners as Manifest[]) l.address.socket_address = { address: '127.0.0.1', port_value: l.name === 'readiness' ? ready : listen }
  for (const c of boot.static_resources.clusters as Manifest[]) {
    const endpoint = c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    if (c.name === 'envoy_admin') endpoint.socket_address = { address: '127.0.0.1', port_value: admin }
    else if (c.name.startsWith('provider-')) endpoint.socket_address = { address: '127.0.0.1', port_value: c.transport_socket ? frontPort : upstream.port }
  }
  for (const [file, text] of Object.entries(files)) if (file.startsWith('sds-')) place(root, `etc/envoy/config/${file}`, atRoot(text))
  place(root, 'etc/envoy/svid/tls.crt', readFileSync(pki.server.cert))
  place(root, 'etc/envoy/svid/tls.key', readFileSync(pki.server.key))
  place(root, 'etc/envoy/svid/ca.crt', readFileSync(pki.ca.cert))
  place(root, 'etc/envoy/trust/bundle.pem', readFileSync(pki.ca.cert))
  place(root, 'etc/ssl/certs/ca-certificates.crt', readFileSync(pki.ca.cert))

  // modelgate: its configuration and the policy ConfigMap's files.
  const cfg = parse(atRoot(files['modelgate.yaml']!)) as Manifest
  if (cfg.server.metricsListen) cfg.server.metricsListen = '127.0.0.1:0'
  // The shared store the values name (redis.address): a redis-server here, its password where the Secret is mounted.
  let redis: TestRedis | undefined
  if (cfg.quotas?.store === 'redis') {
    redis = await startRedis({ password: REDIS_PASSWORD })
    cfg.quotas.redis.url = `redis://127.0.0.1:${redis.port}`
    place(root, 'etc/modelgate/redis/password', `${REDIS_PASSWORD}\n`)
  }
  place(root, 'etc/modelgate/config/modelgate.yaml', stringify(cfg))
  for (const [file, text] of Object.entries(find(docs, 'ConfigMap', 'gw-modelgate-policies').data as Record<string, string>)) place(root, `etc/modelgate/policies/${file}`, text)
  // The credentials volume as the kubelet fills it: each projected Secret key at its path.
  const credentials = (podSpec(docs).volumes as Manifest[]).find((v) => v.name === 'credentials')
  for (const source of (credentials?.projected.sources ?? []) as Manifest[]) {
    const own = docs.find((d) => d.kind === 'Secret' && d.metadata.name === source.secret.name)
    for (const item of source.secret.items as { key: string; path: string }[]) {
      const value = own ? Buffer.from(own.data[item.key], 'base64').toString() : SECRETS[source.secret.name]?.[item.key]
      if (value === undefined) throw new Error(`no test value for Secret ${source.secret.name} key ${item.key}`)
      place(root, `etc/modelgate/credentials/${item.path}`, value)
    }
  }
  mkdirSync(join(root, 'run/modelgate'), { recursive: true })
  mkdirSync(join(root, 'var/lib/modelgate'), { recursive: true })

  // As in the pod: modelgate first (the native sidecar), Envoy once it serves.
  let app: App
  try {
    app = await startApp({ config: loadConfigFile(join(root, 'etc/modelgate/config/modelgate.yaml')), logger: createLogger({ level: 'error' }) })
  } catch (err) {
    await redis?.stop()
    throw err
  }
  let envoy: RunningEnvoy
  try {
    envoy = await startEnvoy({ workDir: root, config: stringify(boot, { lineWidth: 0 }) })
  } catch (err) {
    await app.shutdown()
    await redis?.stop()
    throw err
  }
  return {
    app,
    envoy,
    root,
    docs,
    redis,
    url: `https://127.0.0.1:${envoy.listenPort}`,
    readinessUrl: `http://127.0.0.1:${ready}`,
    async stop() {
      await envoy.stop()
      await app.shutdown()
      await redis?.stop()
    },
  }
}

function sdk(pod: RunningPod) {
  const tls = { ca: readFileSync(pki.ca.cert), cert: readFileSync(clients.checkout.cert), key: readFileSync(clients.checkout.key), servername: 'localhost' }
  const dispatcher = new Agent({ connect: tls })
  const opts = { maxRetries: 0, timeout: 20_000, fetch: undiciFetch as unknown as typeof fetch, fetchOptions: { dispatcher } as never }
  return {
    openai: new OpenAI({ apiKey: 'sk-test-not-a-real-key', baseURL: `${pod.url}/v1`, ...opts }),
    anthropic: new Anthropic({ apiKey: 'test-not-a-real-key', baseURL: pod.url, ...opts }),
    close: () => dispatcher.close(),
  }
}

for (const name of ['minimal', 'production'] as const) {
  t.test(`the pod rendered with the ${name} values serves an allowed request and refuses a denied one`, async (t) => {
    const pod = await runPod(name, [...valueSets()[name], ...(name === 'minimal' ? KEY_VALUES : [])])
    const client = sdk(pod)
    t.teardown(async () => {
      await client.close()
      await pod.stop()
    })

    // Kubelet's view: Envoy's readiness listener answers the admin's /ready and nothing else of it.
    const ready = await fetch(`${pod.readinessUrl}/ready`)
    t.equal(ready.status, 200, 'GET /ready on the readiness port is 200')
    t.equal((await ready.text()).trim(), 'LIVE', "…and is the admin's own answer")
    t.equal((await fetch(`${pod.readinessUrl}/live`)).status, 200)
    for (const path of ['/stats', '/config_dump', '/quitquitquit']) t.equal((await fetch(`${pod.readinessUrl}${path}`, { method: path === '/quitquitquit' ? 'POST' : 'GET' })).status, 404, `${path} of the admin is not reachable`)
    if (name === 'production') {
      // redis.address: modelgate keeps its shared state there, logged in with the mounted password.
      const admin = new Redis(pod.redis!.port, '127.0.0.1', { password: REDIS_PASSWORD, lazyConnect: true, maxRetriesPerRequest: 1 })
      await admin.connect()
      const clients = String(await admin.client('LIST')).trim().split('\n')
      admin.disconnect()
      t.ok(clients.length >= 2, 'modelgate is connected to the Redis the values name')
      const stats = await fetch(`${pod.readinessUrl}/stats/prometheus`)
      t.equal(stats.status, 200, 'with metrics on, Envoy’s Prometheus stats are')
      t.match(await stats.text(), /envoy_cluster_upstream_rq/)
    }

    // modelgate's probe, the command the pod runs (the image's /app is this checkout).
    const probe = container(pod.docs, 'modelgate').readinessProbe.exec.command as string[]
    const probeArgs = probe.slice(1).map((a) => (a === '/app/bin/modelgate.js' ? join(REPO_ROOT, 'bin', 'modelgate.js') : a.replace(POD_PATHS, `${pod.root}/$1`)))
    const { stdout } = await run(process.execPath, probeArgs)
    t.equal(stdout.trim(), 'SERVING', `${probe.slice(2, 3).join(' ')} answers SERVING over the shared socket`)

    // Allowed: checkout may use gpt-4o-mini (policies/tests/ALLOW/checkout-chat-gpt-4o-mini.json).
    const before = provider.requests.length
    const answer = await client.openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello' }] })
    t.ok(answer.choices[0]?.message.content, 'the allowed request is answered')
    const seen = provider.requests.slice(before)
    t.same(
      seen.map((r) => [r.path, r.headers.host]),
      [['/v1/chat/completions', 'api.openai.com']],
      'it reached the provider once, through the TLS cluster the chart renders for api.openai.com',
    )
    const expectedKey = name === 'minimal' ? VALUE_KEYS.openai : SECRETS['openai-payments-key']!['api-key']
    t.equal(seen[0]?.headers.authorization, `Bearer ${expectedKey}`, name === 'minimal' ? 'with the key given as a value' : "with the payments team's key from its Secret (checkout is in payments), not the caller's")

    // Denied: Claude Sonnet is not in the payments catalogue (policies/tests/DENY/checkout-claude-sonnet-not-approved.json).
    const denied = await client.anthropic.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'Hello' }] }).then(
      () => undefined,
      (err: unknown) => err,
    )
    t.ok(denied instanceof Anthropic.APIError, 'the denied request fails')
    const apiError = denied as InstanceType<typeof Anthropic.APIError>
    t.equal(apiError.status, 403)
    t.equal(apiError.errorCode, 'MG_POLICY_DENIED', 'with the policy denial code, in Anthropic’s shape')
    t.equal(apiError.headers?.get('x-modelgate-error'), 'MG_POLICY_DENIED')
    t.equal(provider.requests.length, before + 1, 'and never reached the provider')
  })
}
