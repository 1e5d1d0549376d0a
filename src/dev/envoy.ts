/**
 * Rendering the Envoy configuration template in envoy/ and running the Envoy
 * binary against it (local stack and end-to-end tests).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync, readSync, fstatSync } from 'node:fs'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse, stringify } from 'yaml'
import type { CatalogProvider, ProviderCatalog, Upstream } from '../providers/catalog.ts'
import { envoyClusters, envoyRoutes } from '../providers/envoy.ts'
import type { DevPki } from './identities.ts'
import { parentDeathPrefix, stopProcess } from './process.ts'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const ENVOY_TEMPLATE = join(REPO_ROOT, 'envoy', 'envoy.template.yaml')

/** Fills `{{ NAME }}` placeholders; every placeholder must have a value and every value a placeholder. */
export function renderTemplate(template: string, vars: Readonly<Record<string, string | number>>): string {
  const seen = new Set<string>()
  const missing = new Set<string>()
  const out = template.replace(/\{\{\s*([A-Z][A-Z0-9_]*)\s*\}\}/g, (_, name: string) => {
    seen.add(name)
    const v = vars[name]
    if (v === undefined) {
      missing.add(name)
      return ''
    }
    return String(v)
  })
  const unused = Object.keys(vars).filter((k) => !seen.has(k))
  const problems = [...[...missing].map((m) => `no value for {{ ${m} }}`), ...unused.map((u) => `${u} is not a placeholder in the template`)]
  if (problems.length) throw new Error(`envoy template: ${problems.join('; ')}`)
  return out
}

export interface EnvoyVars {
  LISTEN_ADDRESS: string
  LISTEN_PORT: number
  ADMIN_PORT: number
  SERVER_CERT: string
  SERVER_KEY: string
  TRUST_BUNDLE: string
  MODELGATE_SOCKET: string
  MESSAGE_TIMEOUT: string
  MAX_BODY_BYTES: number
}

/** The providers Envoy routes to: the catalog, and where each is reached. */
export interface EnvoyProviders {
  readonly catalog: Pick<ProviderCatalog, 'providers'>
  /** Where each provider is reached instead of its upstream (the local stack: the stand-in provider). */
  readonly upstreamOf?: (p: CatalogProvider) => Upstream
  /** CA bundle provider certificates are verified against (TLS upstreams). */
  readonly caFile?: string
}

/** Idle timeout of provider connections: below the stand-in's (and common providers') keep-alive. */
export const PROVIDER_IDLE_TIMEOUT = '30s'

/** Every provider of the catalog reached at the stand-in provider (plain HTTP, each upstream's path kept). */
export function standInProviders(catalog: Pick<ProviderCatalog, 'providers'>, at: { host: string; port: number }, mcpAt?: { host: string; port: number }): EnvoyProviders {
  return {
    catalog,
    upstreamOf: (p) => {
      // MCP servers go to the stand-in MCP server when there is one.
      const to = p.kind === 'mcp' && mcpAt ? mcpAt : at
      return { tls: false, host: to.host, port: to.port, path: p.upstream.path }
    },
  }
}

/**
 * The variables for a stack on this machine: the listener on 127.0.0.1 and
 * certificates from the development PKI. Used by `modelgate start` and the
 * end-to-end tests (with standInProviders for the routes).
 */
export function localStackVars(o: {
  pki: DevPki
  socket: string
  listenPort: number
  messageTimeout?: string | undefined
}): EnvoyVars {
  return {
    LISTEN_ADDRESS: '127.0.0.1',
    LISTEN_PORT: o.listenPort,
    ADMIN_PORT: 0,
    SERVER_CERT: o.pki.server.cert,
    SERVER_KEY: o.pki.server.key,
    TRUST_BUNDLE: o.pki.ca.cert,
    MODELGATE_SOCKET: o.socket,
    MESSAGE_TIMEOUT: o.messageTimeout ?? '2s',
    MAX_BODY_BYTES: 1048576,
  }
}

/**
 * The template with its placeholders filled and the providers' routes and
 * clusters added (src/providers/envoy.ts): routes before the 404 backstop,
 * clusters after modelgate's.
 */
export function envoyConfigObject(vars: EnvoyVars, providers: EnvoyProviders): Record<string, any> {
  const doc = parse(renderTemplate(readFileSync(ENVOY_TEMPLATE, 'utf8'), vars as unknown as Record<string, string | number>)) as Record<string, any>
  const listener = doc.static_resources.listeners.find((l: { name: string }) => l.name === 'workloads')
  const hcm = listener.filter_chains[0].filters.find((f: { name: string }) => f.name === 'envoy.filters.network.http_connection_manager').typed_config
  const vhost = hcm.route_config.virtual_hosts[0]
  vhost.routes = [...envoyRoutes(providers.catalog), ...vhost.routes]
  const clusters = envoyClusters(providers.catalog, {
    maxBodyBytes: vars.MAX_BODY_BYTES,
    idleTimeout: PROVIDER_IDLE_TIMEOUT,
    caFile: providers.caFile ?? '/etc/ssl/certs/ca-certificates.crt',
    ...(providers.upstreamOf ? { upstreamOf: providers.upstreamOf } : {}),
  })
  doc.static_resources.clusters.push(...clusters)
  return doc
}

export function renderEnvoyConfig(vars: EnvoyVars, providers: EnvoyProviders): string {
  return stringify(envoyConfigObject(vars, providers), { lineWidth: 0 })
}

/** The Envoy binary: $ENVOY_BIN, else the one setup installed in .tools/, else `envoy` on PATH. */
export function envoyBinary(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ENVOY_BIN) return env.ENVOY_BIN
  const local = join(REPO_ROOT, '.tools', 'bin', 'envoy')
  return existsSync(local) ? local : 'envoy'
}

export interface RunningEnvoy {
  readonly process: ChildProcess
  readonly adminUrl: string
  /** Port the workload listener actually bound. */
  readonly listenPort: number
  /** Everything Envoy wrote (stdout+stderr), for diagnostics. */
  output(): string
  stop(): Promise<void>
}

/** How often Envoy flushes its access log. */
export const ACCESS_LOG_FLUSH_MS = 250

export interface StartEnvoyOptions {
  readonly workDir: string
  /** Values for envoy/envoy.template.yaml (with `providers`); or give `config` instead. */
  readonly vars?: EnvoyVars
  /** The provider routes and clusters added to the template. */
  readonly providers?: EnvoyProviders
  /** A complete bootstrap to run as is (e.g. the Helm chart's), instead of the rendered template. */
  readonly config?: string
  readonly logLevel?: string
  /** Extra command-line arguments, e.g. `--component-log-level ext_proc:debug`. */
  readonly args?: readonly string[]
  /** Changes the rendered configuration (parsed) before Envoy starts. */
  readonly edit?: (config: Record<string, any>) => void
  /** Writes Envoy's stdout and stderr (the access log among them) to this file instead of keeping them in memory. */
  readonly logFile?: string
  readonly readyTimeoutMs?: number
}

/**
 * Starts Envoy with a rendered config whose LISTEN_PORT and ADMIN_PORT may be
 * 0; waits until the admin endpoint reports LIVE and returns the bound ports.
 *
 * Envoy writes the admin address it bound to `<workDir>/envoy-admin-address`.
 * A file left by an earlier run names a port nobody listens on any more, so it
 * is removed before Envoy starts and only the new one is read. Envoy gets
 * SIGTERM if the process that started it dies (see parentDeathPrefix).
 */
export async function startEnvoy(opts: StartEnvoyOptions): Promise<RunningEnvoy> {
  const configPath = join(opts.workDir, 'envoy.yaml')
  const adminPath = join(opts.workDir, 'envoy-admin-address')
  if (!opts.config && !(opts.vars && opts.providers)) throw new Error('startEnvoy: give vars and providers, or config')
  let config = opts.config ?? renderEnvoyConfig(opts.vars!, opts.providers!)
  if (opts.edit) {
    const doc = parse(config) as Record<string, any>
    opts.edit(doc)
    config = stringify(doc, { lineWidth: 0 })
  }
  await writeFile(configPath, config)
  await rm(adminPath, { force: true })
  const logFd = opts.logFile ? openSync(opts.logFile, 'a') : undefined
  const [command, ...prefix] = [...parentDeathPrefix('TERM'), envoyBinary()]
  const child = spawn(
    command!,
    [
      ...prefix,
      ...['-c', configPath, '--admin-address-path', adminPath, '--disable-hot-restart', '--concurrency', '2', '--log-level', opts.logLevel ?? 'warn'],
      // The access log reaches stdout within a quarter second (Envoy's default is 10 s).
      ...['--file-flush-interval-msec', String(ACCESS_LOG_FLUSH_MS)],
      ...(opts.args ?? []),
    ],
    { stdio: logFd === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', logFd, logFd] },
  )
  if (logFd !== undefined) closeSync(logFd)
  let kept = ''
  const keep = (b: Buffer) => {
    kept += b.toString()
    if (kept.length > 1_000_000) kept = kept.slice(-500_000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const output = () => (opts.logFile ? tail(opts.logFile, 500_000) : kept)
  let exited: number | null | undefined
  let spawnError: Error | undefined
  child.once('exit', (code) => (exited = code))
  child.once('error', (err) => (spawnError = err))
  const stop = () => stopProcess(child, 5000)

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000)
  let adminUrl = ''
  while (Date.now() < deadline) {
    if (spawnError) throw new Error(`envoy could not be started (${envoyBinary()}): ${spawnError.message}`)
    if (exited !== undefined) throw new Error(`envoy exited with code ${exited} before it was ready:\n${output().slice(-4000)}`)
    if (!adminUrl) {
      try {
        const address = (await readFile(adminPath, 'utf8')).trim()
        // Written by this Envoy (the file was removed before it started); maybe not completely yet.
        if (/:\d+$/.test(address)) adminUrl = `http://${address}`
      } catch {
        /* not written yet */
      }
    }
    if (adminUrl) {
      try {
        const ready = await fetch(`${adminUrl}/ready`)
        if (ready.ok) {
          const listeners = (await (await fetch(`${adminUrl}/listeners?format=json`)).json()) as {
            listener_statuses?: { name: string; local_address?: { socket_address?: { port_value?: number } } }[]
          }
          const port = listeners.listener_statuses?.find((l) => l.name === 'workloads')?.local_address?.socket_address?.port_value
          if (port) return { process: child, adminUrl, listenPort: port, output, stop }
        }
      } catch {
        /* not listening yet */
      }
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  await stop()
  throw new Error(`envoy was not ready within ${opts.readyTimeoutMs ?? 30_000} ms:\n${output().slice(-4000)}`)
}

/** The last `bytes` of a file. */
function tail(file: string, bytes: number): string {
  const fd = openSync(file, 'r')
  try {
    const size = fstatSync(fd).size
    const start = Math.max(0, size - bytes)
    const buf = Buffer.alloc(size - start)
    readSync(fd, buf, 0, buf.length, start)
    return buf.toString('utf8')
  } finally {
    closeSync(fd)
  }
}

/** Envoy's counters and gauges whose names match `filter` (a regular expression Envoy applies), by name. */
export async function envoyStats(adminUrl: string, filter: string): Promise<Record<string, number>> {
  const res = await fetch(`${adminUrl}/stats?format=json&filter=${encodeURIComponent(filter)}`)
  if (!res.ok) throw new Error(`envoy admin /stats answered ${res.status}`)
  const body = (await res.json()) as { stats?: { name?: string; value?: number }[] }
  const out: Record<string, number> = {}
  for (const s of body.stats ?? []) if (s.name !== undefined && typeof s.value === 'number') out[s.name] = s.value
  return out
}
