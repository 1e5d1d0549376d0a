/**
 * The credentials stage: callers never hold a provider key.
 *
 * - Request headers: every credential-like header the caller sent
 *   (`authorization`, `x-api-key`, `api-key`, `cookie`, …; headers.ts) is
 *   removed, whatever happens next: none is ever forwarded.
 * - Request body (after policy): the provider's own credential is chosen —
 *   the one a `@credential("<name>")` annotation on the permit that allowed
 *   the request names, else the first of the provider's credentials whose
 *   `when` admits the caller — and set in the provider's header. Envoy holds
 *   a buffered request's headers until the body phase is answered, so the
 *   credential is on the request before any byte of it leaves; a request
 *   without a body (its body phase runs with its headers) gets it with them.
 *   No credential for the caller: refused (MG_CREDENTIAL_MISSING); one that
 *   cannot be had right now (a file that lost its value, a token endpoint
 *   that is down): refused (MG_CREDENTIAL_UNAVAILABLE).
 *
 * The choice is recorded on `ctx.out.credential` (name and source, never the value).
 */
import { GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { Stage } from '../pipeline/stage.ts'
import { ANTHROPIC_VERSION, CALLER_CREDENTIAL_HEADERS } from './headers.ts'
import type { CallerFacts, CompiledCredential, CredentialStore } from './store.ts'

export interface CredentialStageOptions {
  readonly store: CredentialStore
  readonly logger: Logger
  /** The caller's teams (entities.json through the policy engine); asked only when a credential selects by team. */
  readonly teamsOf?: (spiffeId: string, namespace: string | undefined) => ReadonlySet<string>
  /**
   * Longest wait for a credential that is being fetched (a first token), in
   * ms: below the phase deadline, so the caller gets MG_CREDENTIAL_UNAVAILABLE
   * rather than MG_TIMEOUT.
   */
  readonly waitMs: number
}

const NO_TEAMS: ReadonlySet<string> = new Set()

/** The credential for this request, or the refusal. */
export function chooseCredential(list: readonly CompiledCredential[], provider: string, caller: CallerFacts, named: readonly string[] | undefined): CompiledCredential {
  if (named && named.length > 1) {
    throw new GateError('MG_POLICY_ERROR', { internal: `the permits that allowed the request name different credentials (${named.join(', ')})` })
  }
  if (named && named.length === 1) {
    const c = list.find((x) => x.name === named[0])
    if (!c) throw new GateError('MG_CREDENTIAL_MISSING', { internal: `policy names credential "${named[0]}", which provider "${provider}" does not have` })
    if (!c.admits(caller)) throw new GateError('MG_CREDENTIAL_MISSING', { internal: `policy names credential "${c.name}" of provider "${provider}", whose \`when\` does not admit ${caller.spiffeId}` })
    return c
  }
  const c = list.find((x) => !x.policyOnly && x.admits(caller))
  if (!c) {
    throw new GateError('MG_CREDENTIAL_MISSING', {
      internal: list.length === 0 ? `provider "${provider}" has no credential configured` : `no credential of provider "${provider}" is for ${caller.spiffeId}`,
    })
  }
  return c
}

export function createCredentialStage(opts: CredentialStageOptions): Stage {
  const { store, logger } = opts
  const waitFor = (p: Promise<string>): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new GateError('MG_CREDENTIAL_UNAVAILABLE', { internal: `no credential within ${opts.waitMs} ms (the token request goes on)` })), opts.waitMs)
      timer.unref()
      p.then(
        (v) => {
          clearTimeout(timer)
          resolve(v)
        },
        (err: unknown) => {
          clearTimeout(timer)
          reject(err)
        },
      )
    })

  return {
    name: 'credentials',
    produces: ['credential'],
    consumes: ['caller', 'target', 'decision'],
    requestHeaders(ctx) {
      for (const h of CALLER_CREDENTIAL_HEADERS) if (ctx.requestHeaders.has(h)) ctx.requestHeaderChanges.removeHeader(h)
    },
    async requestBody(ctx) {
      const provider = ctx.need('target').provider
      const identity = ctx.need('caller').workload
      let teams: ReadonlySet<string> | undefined
      const caller: CallerFacts = {
        spiffeId: identity.spiffeId,
        namespace: identity.namespace,
        teams: () => (teams ??= store.usesTeams && opts.teamsOf ? opts.teamsOf(identity.spiffeId, identity.namespace) : NO_TEAMS),
      }
      const chosen = chooseCredential(store.of(provider.name), provider.name, caller, ctx.out.decision?.credentials)
      const pending = chosen.secret()
      const secret = typeof pending === 'object' ? await waitFor(pending) : pending
      const changes = ctx.requestHeaderChanges
      if (chosen.header && secret !== undefined) changes.setHeader(chosen.header.name, chosen.header.prefix + secret)
      for (const [name, value] of chosen.headers) changes.setHeader(name, value)
      if (provider.kind === 'anthropic' && !ctx.requestHeaders.has('anthropic-version')) changes.setHeader('anthropic-version', ANTHROPIC_VERSION)
      ctx.put('credential', { name: chosen.name, source: chosen.source })
    },
    responseHeaders(ctx) {
      const status = ctx.responseStatus
      if (status === 401 && ctx.out.credential && ctx.out.credential.source !== 'none') {
        logger.warn('the provider refused the request with its credential', { request_id: ctx.id, provider: ctx.out.target?.provider.name, credential: ctx.out.credential.name, status })
      }
    },
  }
}
