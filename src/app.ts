/**
 * Assembles modelgate from a validated configuration: builds every stage once
 * (compiling what they need), puts them in the fixed order, and starts the
 * gRPC server. `shutdown` drains streams and then releases the stages.
 */
import { resolveConfigPath, type Config } from './config/config.ts'
import { createLogger, type Logger } from './log.ts'
import { createIdentityStage } from './identity/stage.ts'
import { Pipeline } from './pipeline/pipeline.ts'
import type { Stage } from './pipeline/stage.ts'
import { createProviderStage } from './providers/stage.ts'
import { compileCatalog } from './providers/catalog.ts'
import { createCredentialStage } from './credentials/stage.ts'
import { createCredentialStore } from './credentials/store.ts'
import { teamLookup } from './credentials/teams.ts'
import { loadAuditExporters } from './audit/exporters.ts'
import { auditExporterNeeds, createAuditStage } from './audit/stage.ts'
import { autoWorkers, createBodyInspector } from './inspection/inspector.ts'
import { createPolicyEngine, createPolicyStage } from './policy/stage.ts'
import { createRedactionStages } from './redaction/stage.ts'
import { createToolCallStage } from './tools/stage.ts'
import { createQuotaStage } from './quotas/stage.ts'
import { createStateStore } from './quotas/create.ts'
import { createMcpGovernance } from './mcp/governance.ts'
import { sharedApprovalStore, sharedSessionStore } from './mcp/store.ts'
import { createApprovalStage } from './mcp/approvals.ts'
import { startServer, type RunningServer } from './server/server.ts'
import type { TransportEvent } from './server/transport.ts'

export interface AppOptions {
  readonly config: Config
  readonly logger?: Logger
  /** Extra stages for tests and embedders: `first` run before all others, `last` after. */
  readonly extraStages?: { readonly first?: readonly Stage[]; readonly last?: readonly Stage[] }
}

export interface App {
  readonly config: Config
  readonly pipeline: Pipeline
  readonly server: RunningServer
  readonly address: string
  shutdown(): Promise<void>
}

/**
 * Builds the stages in their fixed order. Everything that can fail at start-up
 * (policy set, detectors, keys, exporters, the audit spool) fails here, before
 * the server listens.
 *
 *   audit → identity → approvals → provider → redaction-scan → policy → credentials → quota → tool-calls → mcp → redaction-apply → mcp-session
 *
 * Audit comes first so that even a request refused for its identity has a
 * record, and (closing in reverse order) it ends the span after every other
 * stage is done. The redaction scan runs before policy so the data classes it
 * finds are part of the Cedar context; the rewrite runs after, because policy
 * decides which classes may leave unredacted. The credentials stage removes
 * the caller's credential headers with the request headers and attaches the
 * provider's once policy has allowed the request (a permit may name the
 * credential). Quotas reserve once every earlier stage has admitted the
 * request (a refused request spends nothing), and read the response before
 * redaction holds any of it back. The tool calls of a response are checked before
 * redaction-apply releases any of its events, and so is an MCP tools/list
 * result filtered to the tools the caller may call (the policy stage hands
 * MCP requests to mcp/); redaction-apply, last, also
 * applies the provider stage's body edits (the model alias). mcp-session,
 * after it, records the data classes redaction found in what an agent
 * session's request or result carries before any of those bytes leave.
 */
export async function buildStages(
  config: Config,
  logger: Logger,
): Promise<{ stages: Stage[]; closers: (() => Promise<void> | void)[]; onTransportEvent: (event: TransportEvent) => void }> {
  const closers: (() => Promise<void> | void)[] = []
  // Delegated users' tokens are checked with jose, loaded only when they are on (about 3 MB of RSS otherwise).
  const users = config.identity.users.enabled ? (await import('./identity/user.ts')).createUserVerifier(config.identity.users, (p) => resolveConfigPath(config, p)) : undefined
  const engine = createPolicyEngine(config, { logger })
  closers.push(() => engine.close())
  try {
    const catalog = compileCatalog(config.providers)
    const credentials = createCredentialStore(catalog, {
      logger: logger.child({ component: 'credentials' }),
      resolve: (p) => resolveConfigPath(config, p),
      pollMs: (config.providers.credentialPollSeconds ?? 10) * 1000,
    })
    closers.push(() => credentials.close())
    warnUnknownCredentialNames(engine.policies, credentials.names, logger)
    const offReload = engine.onReload((s) => {
      if (s.ok) warnUnknownCredentialNames(engine.policies, credentials.names, logger)
    })
    closers.push(offReload)
    credentials.start()
    // The quota store (memory or Redis) and the stage; bodies are measured only when a rule limits tokens.
    const store = await createStateStore(config, logger.child({ component: 'quota-store' }))
    closers.push(() => store.close())
    const teamsOf = teamLookup(() => engine.activeSet)
    const quota = config.quotas.rules.length > 0 ? createQuotaStage({ config: config.quotas, store, teamsOf, logger: logger.child({ stage: 'quota' }) }) : undefined
    const jsonLimits = { maxDepth: config.server.maxJsonDepth, maxValues: config.server.maxJsonValues }
    // The policy decision carries the classes that may leave unredacted (decided once with the request).
    const redaction = createRedactionStages(config.redaction, { logger, jsonLimits })
    // Request bodies are parsed and scanned once, large ones in worker threads.
    const inspector = await createBodyInspector({
      limits: jsonLimits,
      ...(config.redaction.enabled ? { engine: redaction.engine } : {}),
      workers: config.server.bodyWorkers || autoWorkers(),
      workerMinBytes: config.server.bodyWorkerMinBytes,
      maxBodyBytes: config.server.maxBodyBytes,
      budgetMs: config.server.phaseTimeoutMs,
      onWorkerError: (err) => logger.error('body inspection worker failed', { error: err.message }),
      // Token counts when a quota rule limits tokens; otherwise characters (for the estimate policy may read).
      measure: quota?.measuresTokens ? 'tokens' : 'chars',
    })
    closers.push(() => inspector.close())
    const mcp = createMcpGovernance({
      engine,
      config: config.mcp,
      logger: logger.child({ component: 'mcp' }),
      maxBytes: config.server.maxBodyBytes,
      servers: new Map(catalog.providers.filter((p) => p.kind === 'mcp').map((p) => [p.name, p.upstream.host])),
      // Agent sessions and approvals live where quota counters do: shared by every replica when that is Redis.
      ...(store.kind === 'redis'
        ? {
            sessions: sharedSessionStore(store, { ttlMs: config.mcp.sessions.ttlSeconds * 1000 }),
            approvals: sharedApprovalStore(store, { ttlMs: config.mcp.approvals.ttlSeconds * 1000, maxEntries: config.mcp.approvals.maxEntries }),
          }
        : {}),
    })
    const stages: Stage[] = [
      createIdentityStage({ config: config.identity, users }),
      // modelgate's approval API answers itself, after the caller is known.
      createApprovalStage({ governance: mcp, engine, ttlMs: config.mcp.approvals.ttlSeconds * 1000 }),
      createProviderStage({ config: config.providers, catalog, maxBodyBytes: config.server.maxBodyBytes, inspector }),
      redaction.scan,
      createPolicyStage(config, { logger, engine, mcp: mcp.authorizer }),
      createCredentialStage({
        store: credentials,
        logger: logger.child({ stage: 'credentials' }),
        teamsOf,
        waitMs: Math.floor(config.server.phaseTimeoutMs / 2),
      }),
      ...(quota ? [quota] : []),
      createToolCallStage({ engine, maxBytes: config.redaction.responses.maxDecodedBytes, logger }),
      mcp.stage,
      redaction.apply,
      mcp.sessionStage,
    ]
    // Last to be built: it takes the spool lock and binds the metrics port.
    await loadAuditExporters(auditExporterNeeds(config))
    const audit = createAuditStage(config, { logger })
    closers.push(() => audit.shutdown())
    await audit.ready()
    return { stages: [audit.stage, ...stages], closers, onTransportEvent: (e) => audit.recordTransport(e) }
  } catch (err) {
    for (const c of closers.reverse()) await c()
    throw err
  }
}

/** A `@credential("…")` annotation that names no credential of any provider refuses every request its permit allows: say so at load. */
function warnUnknownCredentialNames(policies: ReadonlyMap<string, { readonly annotations: Readonly<Record<string, string>> }>, names: ReadonlySet<string>, logger: Logger): void {
  const unknown = [...policies.values()].map((p) => [p, p.annotations.credential] as const).filter(([, name]) => name !== undefined && !names.has(name))
  if (unknown.length > 0) {
    logger.warn('policies name credentials no provider has: the requests they permit are refused (MG_CREDENTIAL_MISSING)', {
      policies: unknown.map(([p, name]) => `${(p as { id?: string }).id ?? '?'} → ${name}`),
    })
  }
}

export async function startApp(opts: AppOptions): Promise<App> {
  const config = opts.config
  const logger = opts.logger ?? createLogger()
  const { stages, closers, onTransportEvent } = await buildStages(config, logger)
  const all = [...(opts.extraStages?.first ?? []), ...stages, ...(opts.extraStages?.last ?? [])]
  let pipeline: Pipeline
  let server: RunningServer
  try {
    pipeline = new Pipeline(all, {
      phaseTimeoutMs: config.server.phaseTimeoutMs,
      onStageError: (stage, phase, err) => {
        if (err.code === 'MG_INTERNAL' || err.code === 'MG_TIMEOUT') logger.error('stage failed', { stage, phase, code: err.code, reason: err.internal })
      },
    })
    server = await startServer({
      listen: config.server.listen,
      maxBodyBytes: config.server.maxBodyBytes,
      drainTimeoutMs: config.server.drainTimeoutMs,
      pipeline,
      logger,
      onTransportEvent,
    })
  } catch (err) {
    // Release what the stages hold (watchers, the spool lock, the metrics port) before giving up.
    for (const c of closers) await c()
    throw err
  }
  let stopping: Promise<void> | undefined
  return {
    config,
    pipeline,
    server,
    address: server.address,
    shutdown() {
      stopping ??= (async () => {
        await server.shutdown()
        for (const c of closers) {
          try {
            await c()
          } catch (err) {
            logger.warn('shutdown step failed', { error: (err as Error).message })
          }
        }
      })()
      return stopping
    },
  }
}
