/**
 * End-to-end harness: a real Envoy (the envoy/ template, rendered), modelgate
 * in this process (so tests can inject faults and inspect state), the
 * stand-in provider, and a development PKI with the workload identities plus
 * deliberately wrong certificates. Every resource is released on teardown.
 */
import { request as httpsRequest } from 'node:https'
import { mkdtemp, rm } from 'node:fs/promises'
import { appendFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { Client as McpClient } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { Agent, fetch as undiciFetch } from 'undici'
import { startApp, type App } from '../../src/app.ts'
import { configFromObject } from '../../src/config/config.ts'
import { createLogger, silentLogger, type Logger } from '../../src/log.ts'
import type { Stage } from '../../src/pipeline/stage.ts'
import { localStackVars, standInProviders, startEnvoy, type RunningEnvoy } from '../../src/dev/envoy.ts'
import { localCatalog, writeLocalKeys, LOCAL_PROVIDERS } from '../../src/cli/start.ts'
import { compileCatalog } from '../../src/providers/catalog.ts'
import { DEV_TRUST_DOMAIN, type DevPki } from '../../src/dev/identities.ts'
import type { KeyPair } from '../../src/dev/pki.ts'
import { sharedTestPki, type ClientName } from './pki.ts'
import { StandInProvider } from '../../src/dev/provider.ts'
import { StandInMcpServer } from '../../src/dev/mcp-server.ts'
import { REPO_ROOT } from '../../src/dev/envoy.ts'

export type { ClientName }

export interface StackOptions {
  /** Merged over the base configuration object (identity, policy dir, …). */
  readonly config?: Record<string, unknown>
  readonly extraStages?: { readonly first?: readonly Stage[]; readonly last?: readonly Stage[] }
  /** Envoy's ext_proc message_timeout (default 2s). */
  readonly messageTimeout?: string
  readonly logger?: Logger
  /** Do not start modelgate (for tests of Envoy without its processor). */
  readonly withoutModelgate?: boolean
  /** Where modelgate's log lines go (default: dropped, or `logger`). */
  readonly logFile?: string
  /** Envoy's stdout and stderr (its access log among them) go to this file. */
  readonly envoyLogFile?: string
}

export interface HttpResult {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: Buffer
  json(): any
  text(): string
}

export interface Stack {
  readonly url: string
  readonly dir: string
  readonly socket: string
  readonly pki: DevPki
  readonly clients: Readonly<Record<ClientName, KeyPair & { spiffeId?: string }>>
  readonly provider: StandInProvider
  /** The stand-in MCP server behind the catalog's MCP entry `tools` (callers' path /mcp/tools). */
  readonly mcpServer: StandInMcpServer
  /**
   * The providers' keys (local stack catalog: openai, anthropic, azure), in
   * files under `<dir>/credentials/<provider>.key` that modelgate reads; the
   * stand-in accepts only these.
   */
  readonly keys: Readonly<Record<(typeof LOCAL_PROVIDERS)[number], string>>
  readonly envoy: RunningEnvoy
  app: App | undefined
  /** Base config object given to modelgate (before validation). */
  readonly configObject: Record<string, unknown>
  request(client: ClientName | null, opts: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer | object }): Promise<HttpResult>
  openai(client: ClientName): OpenAI
  anthropic(client: ClientName): Anthropic
  /** The official MCP SDK client, connected through Envoy (default path /mcp/tools), with extra request headers. */
  mcp(client: ClientName, opts?: { path?: string; headers?: Record<string, string> }): Promise<McpClient>
  startModelgate(overrides?: { config?: Record<string, unknown>; extraStages?: StackOptions['extraStages'] }): Promise<App>
  stopModelgate(): Promise<void>
  /**
   * The records of the stack's audit file once `until` holds for them
   * (records are written when streams close), or what the file has after
   * AUDIT_WAIT_MS.
   */
  auditRecords(until: (records: AuditRecord[]) => boolean): Promise<AuditRecord[]>
  /** The attributes of a request's own audit record (the chained one, not its stage spans); throws after AUDIT_WAIT_MS without it. */
  auditRecord(requestId: string): Promise<Record<string, unknown>>
  close(): Promise<void>
}

/** One line of the audit file. */
export type AuditRecord = { readonly name: string; readonly attributes: Record<string, unknown> } & Record<string, unknown>

/** The longest an audit lookup waits for its record. */
const AUDIT_WAIT_MS = 10_000

function merge(base: Record<string, unknown>, over: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!over) return base
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) {
    const b = out[k]
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? merge(b as Record<string, unknown>, v as Record<string, unknown>) : v
  }
  return out
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const { pki, clients } = await sharedTestPki()
  const dir = await mkdtemp(join(tmpdir(), 'modelgate-e2e-'))
  const socket = join(dir, 'modelgate.sock')
  // The local stack's providers, each with its key in a file; the stand-in accepts only those keys.
  const keys = await writeLocalKeys(join(dir, 'credentials'))
  const provider = new StandInProvider({ keys: { openai: [keys.openai], anthropic: [keys.anthropic], azure: [keys.azure] } })
  const p = await provider.listen()
  const mcpServer = new StandInMcpServer()
  const m = await mcpServer.listen()
  const configObject = merge(
    {
      server: { listen: `unix://${socket}`, phaseTimeoutMs: 1500, drainTimeoutMs: 2000 },
      identity: { trustDomains: [DEV_TRUST_DOMAIN] },
      providers: {
        catalog: {
          ...localCatalog(join(dir, 'credentials')),
          tools: { kind: 'mcp', upstream: 'http://mcp.tools.example.com/mcp', credentials: [{ name: 'none', none: true }] },
        },
      },
      policy: { dir: join(REPO_ROOT, 'policies'), watch: false },
      // Each stack has its own spool and record file: stacks in parallel test processes never share a lock.
      audit: { file: join(dir, 'audit.jsonl'), spool: { dir: join(dir, 'spool') } },
    },
    opts.config,
  )
  // With a log file, everything modelgate logs (debug included) is kept there.
  const logger = opts.logger ?? (opts.logFile ? createLogger({ level: 'debug', write: (line) => appendFileSync(opts.logFile!, line + '\n') }) : silentLogger)
  let app: App | undefined
  let stackRef: Stack | undefined
  let extra = opts.extraStages
  const startModelgate = async (o: { config?: Record<string, unknown>; extraStages?: StackOptions['extraStages'] } = {}) => {
    if (o.extraStages) extra = o.extraStages
    const cfg = configFromObject(merge(configObject, o.config), 'e2e-config', REPO_ROOT)
    app = await startApp({ config: cfg, logger, ...(extra ? { extraStages: extra } : {}) })
    if (stackRef) stackRef.app = app
    return app
  }
  const stopModelgate = async () => {
    const a = app
    app = undefined
    if (stackRef) stackRef.app = undefined
    if (a) await a.shutdown()
  }
  if (!opts.withoutModelgate) await startModelgate()

  let envoy: RunningEnvoy
  try {
    envoy = await startEnvoy({
      workDir: dir,
      vars: localStackVars({ pki, socket, listenPort: 0, messageTimeout: opts.messageTimeout }),
      providers: standInProviders(compileCatalog(configFromObject(configObject, 'e2e-config', REPO_ROOT).providers), p, { host: '127.0.0.1', port: m.port }),
      ...(opts.envoyLogFile ? { logFile: opts.envoyLogFile } : {}),
    })
  } catch (err) {
    await stopModelgate()
    await provider.close()
    await mcpServer.close()
    throw err
  }
  const url = `https://127.0.0.1:${envoy.listenPort}`
  const ca = readFileSync(pki.ca.cert)
  const agents: Agent[] = []
  const tlsFor = (client: ClientName | null) => {
    if (!client) return { ca }
    const c = clients[client]
    return { ca, cert: readFileSync(c.cert), key: readFileSync(c.key) }
  }
  const dispatcher = (client: ClientName) => {
    const a = new Agent({ connect: { ...tlsFor(client), servername: 'localhost' } })
    agents.push(a)
    return a
  }

  const stack: Stack = {
    url,
    dir,
    socket,
    pki,
    clients,
    provider,
    mcpServer,
    keys,
    envoy,
    app,
    configObject,
    request(client, o) {
      return new Promise<HttpResult>((resolve, reject) => {
        const body = o.body === undefined ? undefined : Buffer.isBuffer(o.body) ? o.body : typeof o.body === 'string' ? Buffer.from(o.body) : Buffer.from(JSON.stringify(o.body))
        const headers: Record<string, string> = { ...(body && !o.headers?.['content-type'] ? { 'content-type': 'application/json' } : {}), ...o.headers }
        if (body) headers['content-length'] = String(body.length)
        const req = httpsRequest(
          { host: '127.0.0.1', port: envoy.listenPort, servername: 'localhost', method: o.method ?? 'POST', path: o.path, headers, ...tlsFor(client), agent: false, timeout: 20_000 },
          (res) => {
            const chunks: Buffer[] = []
            res.on('data', (c: Buffer) => chunks.push(c))
            res.on('end', () => {
              const b = Buffer.concat(chunks)
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b, json: () => JSON.parse(b.toString('utf8')), text: () => b.toString('utf8') })
            })
            res.on('error', reject)
          },
        )
        req.on('timeout', () => req.destroy(new Error('request timed out')))
        req.on('error', reject)
        req.end(body)
      })
    },
    openai(client) {
      return new OpenAI({ apiKey: 'sk-test-not-a-real-key', baseURL: `${url}/v1`, maxRetries: 0, timeout: 20_000, fetch: undiciFetch as unknown as typeof fetch, fetchOptions: { dispatcher: dispatcher(client) } as never })
    },
    anthropic(client) {
      return new Anthropic({ apiKey: 'test-not-a-real-key', baseURL: url, maxRetries: 0, timeout: 20_000, fetch: undiciFetch as unknown as typeof fetch, fetchOptions: { dispatcher: dispatcher(client) } as never })
    },
    async mcp(client, o = {}) {
      const d = dispatcher(client)
      const c = new McpClient({ name: 'modelgate-e2e', version: '1.0.0' })
      const transport = new StreamableHTTPClientTransport(new URL(`${url}${o.path ?? '/mcp/tools'}`), {
        fetch: ((u: string | URL, init?: RequestInit) => undiciFetch(u, { ...(init as object), dispatcher: d } as never)) as unknown as typeof fetch,
        ...(o.headers ? { requestInit: { headers: o.headers } } : {}),
      })
      await c.connect(transport)
      return c
    },
    startModelgate,
    stopModelgate,
    async auditRecords(until) {
      const file = join(dir, 'audit.jsonl')
      const deadline = Date.now() + AUDIT_WAIT_MS
      for (;;) {
        let text = ''
        try {
          text = readFileSync(file, 'utf8')
        } catch {}
        // Only whole lines: the sink may be part-way through writing the last one.
        const records = text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord)
        if (until(records) || Date.now() > deadline) return records
        await new Promise((r) => setTimeout(r, 25))
      }
    },
    async auditRecord(requestId) {
      const own = (r: AuditRecord) => r.attributes['modelgate.request.id'] === requestId && typeof r.attributes['modelgate.audit.seq'] === 'number'
      const record = (await stack.auditRecords((rs) => rs.some(own))).find(own)
      if (!record) throw new Error(`no audit record for ${requestId}`)
      return record.attributes
    },
    async close() {
      for (const a of agents) await a.close().catch(() => {})
      await envoy.stop()
      await stopModelgate()
      await provider.close()
      await mcpServer.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
  stackRef = stack
  return stack
}
