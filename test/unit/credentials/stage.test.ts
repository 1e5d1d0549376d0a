/**
 * The credentials stage: the caller's credential headers are removed, the
 * provider's own is attached in its header, chosen by policy annotation or
 * by the `when` rules, and every way of not having one is refused.
 */
import t from 'tap'
import { join } from 'node:path'
import type { CredentialConfig, ProviderEntryConfig } from '../../../src/config/sections/providers.ts'
import { CALLER_CREDENTIAL_HEADERS } from '../../../src/credentials/headers.ts'
import { createCredentialStage } from '../../../src/credentials/stage.ts'
import { createCredentialStore, CredentialSetupError } from '../../../src/credentials/store.ts'
import { teamsIn } from '../../../src/credentials/teams.ts'
import { REPO_ROOT } from '../../../src/dev/envoy.ts'
import { GateError } from '../../../src/errors.ts'
import { createLogger, silentLogger } from '../../../src/log.ts'
import { RequestContext, type PolicyDecision } from '../../../src/pipeline/context.ts'
import { compileCatalog, type CatalogProvider } from '../../../src/providers/catalog.ts'
import { matchRoute } from '../../../src/providers/routes.ts'
import { compilePolicySources, readPolicyDirSync } from '../../../src/policy/load.ts'

const CHECKOUT = 'spiffe://modelgate.local/ns/payments/sa/checkout'
const NOTEBOOK = 'spiffe://modelgate.local/ns/research/sa/notebook'
const BATCH = 'spiffe://modelgate.local/ns/payments/sa/batch'

function stageFor(t: { testdir(files?: Record<string, string>): string; teardown(fn: () => unknown): void }, entries: Record<string, Partial<ProviderEntryConfig> & { kind: ProviderEntryConfig['kind'] }>, opts: { teams?: Record<string, string[]>; env?: Record<string, string>; waitMs?: number } = {}) {
  const dir = t.testdir({ 'openai.key': 'sk-openai-default\n', 'payments.key': 'sk-openai-payments\n', 'anthropic.key': 'sk-ant-default', 'azure.key': 'azure-key-1' })
  const catalog = compileCatalog({ catalog: Object.fromEntries(Object.entries(entries).map(([n, e]) => [n, { upstream: 'https://example.test', ...e }])) })
  const lines: string[] = []
  const store = createCredentialStore(catalog, { logger: createLogger({ level: 'debug', write: (l) => lines.push(l) }), resolve: (p) => join(dir, p), env: opts.env ?? {}, pollMs: 60_000 })
  store.start()
  t.teardown(() => store.close())
  const teams = opts.teams ?? {}
  const stage = createCredentialStage({ store, logger: silentLogger, teamsOf: (id) => new Set(teams[id] ?? []), waitMs: opts.waitMs ?? 500 })
  return { stage, store, lines }
}

function request(provider: { name: string; kind: ProviderEntryConfig['kind'] }, spiffeId: string, headers: Record<string, string> = {}, credentials?: string[]): RequestContext {
  const ctx = new RequestContext()
  for (const [k, v] of Object.entries(headers)) ctx.requestHeaders.set(k, v)
  ctx.put('target', { route: matchRoute('/v1/chat/completions')!, provider: { name: provider.name, kind: provider.kind } as CatalogProvider })
  const m = /^spiffe:\/\/([^/]+)(\/ns\/([^/]+)\/sa\/([^/]+))$/.exec(spiffeId)!
  ctx.put('caller', { workload: { spiffeId, trustDomain: m[1]!, path: m[2]!, namespace: m[3], serviceAccount: m[4], source: 'mtls', certificateSha256: undefined }, user: ctx.out.caller?.user })
  if (credentials) ctx.put('decision', { effect: 'allow', decisionId: 'd', policies: [], errors: [], policySetHash: 'h', cached: false, credentials } satisfies PolicyDecision)
  return ctx
}

async function run(stage: ReturnType<typeof stageFor>['stage'], ctx: RequestContext): Promise<GateError | undefined> {
  try {
    await stage.requestHeaders!(ctx)
    await stage.requestBody!(ctx)
  } catch (err) {
    if (err instanceof GateError) return err
    throw err
  }
  return undefined
}

const file = (name: string, f: string, extra: Partial<CredentialConfig> = {}): CredentialConfig => ({ name, file: f, ...extra })

t.test('every credential-like header the caller sent is removed; other headers stay', async (t) => {
  const { stage } = stageFor(t, { openai: { kind: 'openai', credentials: [file('default', 'openai.key')] } })
  const sent = Object.fromEntries(CALLER_CREDENTIAL_HEADERS.map((h) => [h, `caller-${h}`]))
  const ctx = request({ name: 'openai', kind: 'openai' }, CHECKOUT, { ...sent, 'user-agent': 'sdk', 'content-type': 'application/json' })
  await stage.requestHeaders!(ctx)
  t.same([...ctx.requestHeaderChanges.remove].sort(), [...CALLER_CREDENTIAL_HEADERS].sort())
  t.same([...ctx.requestHeaderChanges.set], [])
  await stage.requestBody!(ctx)
  t.same(Object.fromEntries(ctx.requestHeaderChanges.set), { authorization: 'Bearer sk-openai-default' }, "the provider's key replaces the caller's")
  t.notOk(ctx.requestHeaderChanges.remove.has('authorization'), 'set, not removed')
  for (const h of CALLER_CREDENTIAL_HEADERS.filter((h) => h !== 'authorization')) t.ok(ctx.requestHeaderChanges.remove.has(h), `${h} stays removed`)
  t.same(ctx.out.credential, { name: 'default', source: 'file' })
})

t.test('each provider gets its credential in its own header', async (t) => {
  const { stage } = stageFor(
    t,
    {
      openai: { kind: 'openai', credentials: [file('default', 'openai.key')] },
      anthropic: { kind: 'anthropic', credentials: [file('default', 'anthropic.key')] },
      azure: { kind: 'azure-openai', credentials: [file('default', 'azure.key')] },
      vllm: { kind: 'openai', credentials: [{ name: 'env', env: 'VLLM_KEY', header: 'x-vllm-key', headers: { 'openai-organization': 'org-platform' } }] },
      ollama: { kind: 'openai', credentials: [{ name: 'open', none: true }] },
    },
    { env: { VLLM_KEY: 'vllm-secret-1' } },
  )
  const sets = async (name: string, kind: ProviderEntryConfig['kind'], headers: Record<string, string> = {}) => {
    const ctx = request({ name, kind }, CHECKOUT, { authorization: 'Bearer sk-callers-own', ...headers })
    t.equal(await run(stage, ctx), undefined, name)
    return Object.fromEntries(ctx.requestHeaderChanges.set)
  }
  t.same(await sets('openai', 'openai'), { authorization: 'Bearer sk-openai-default' })
  t.same(await sets('anthropic', 'anthropic'), { 'x-api-key': 'sk-ant-default', 'anthropic-version': '2023-06-01' }, 'x-api-key, and the API version Anthropic requires')
  t.same(await sets('anthropic', 'anthropic', { 'anthropic-version': '2023-01-01' }), { 'x-api-key': 'sk-ant-default' }, "the caller's API version is kept")
  t.same(await sets('azure', 'azure-openai'), { 'api-key': 'azure-key-1' })
  t.same(await sets('vllm', 'openai'), { 'x-vllm-key': 'vllm-secret-1', 'openai-organization': 'org-platform' }, 'a configured header (raw), and fixed headers')
  t.same(await sets('ollama', 'openai'), {}, 'none: no credential, and the caller’s is still removed')
})

t.test('rules: the first credential whose `when` admits the caller, by SPIFFE ID, prefix, namespace or team', async (t) => {
  const { stage } = stageFor(
    t,
    {
      openai: {
        kind: 'openai',
        credentials: [
          file('batch', 'payments.key', { when: { spiffeIds: [BATCH] } }),
          file('payments', 'payments.key', { when: { teams: ['payments'] } }),
          file('research', 'openai.key', { when: { namespaces: ['research'], spiffeIdPrefixes: ['spiffe://modelgate.local/ns/lab/'] } }),
        ],
      },
    },
    { teams: { [CHECKOUT]: ['payments'] } },
  )
  const chosen = async (id: string) => {
    const ctx = request({ name: 'openai', kind: 'openai' }, id)
    const err = await run(stage, ctx)
    return err ? err.code : ctx.out.credential?.name
  }
  t.equal(await chosen(BATCH), 'batch', 'by SPIFFE ID, first in order')
  t.equal(await chosen(CHECKOUT), 'payments', 'by team (entities.json)')
  t.equal(await chosen(NOTEBOOK), 'research', 'by namespace')
  t.equal(await chosen('spiffe://modelgate.local/ns/lab/sa/x'), 'research', 'by prefix')
  t.equal(await chosen('spiffe://modelgate.local/ns/other/sa/x'), 'MG_CREDENTIAL_MISSING', 'nobody else')
})

t.test('policy: a @credential annotation chooses, within what `when` admits; policy-only credentials are never chosen by rules', async (t) => {
  const { stage } = stageFor(t, {
    openai: {
      kind: 'openai',
      credentials: [file('premium', 'payments.key', { policyOnly: true }), file('payments-only', 'payments.key', { when: { namespaces: ['payments'] }, policyOnly: true }), file('default', 'openai.key')],
    },
  })
  const p = { name: 'openai', kind: 'openai' as const }
  const named = async (id: string, names: string[] | undefined) => {
    const ctx = request(p, id, {}, names)
    const err = await run(stage, ctx)
    return err ? `${err.code}: ${err.internal}` : Object.fromEntries(ctx.requestHeaderChanges.set).authorization
  }
  t.equal(await named(NOTEBOOK, undefined), 'Bearer sk-openai-default', 'rules skip policy-only credentials')
  t.equal(await named(NOTEBOOK, []), 'Bearer sk-openai-default', 'no annotation: the rules')
  t.equal(await named(NOTEBOOK, ['premium']), 'Bearer sk-openai-payments', 'the annotation chooses')
  t.equal(await named(CHECKOUT, ['payments-only']), 'Bearer sk-openai-payments')
  t.equal(await named(NOTEBOOK, ['payments-only']), `MG_CREDENTIAL_MISSING: policy names credential "payments-only" of provider "openai", whose \`when\` does not admit ${NOTEBOOK}`, 'a team credential never goes to another team, whatever policy says')
  t.equal(await named(NOTEBOOK, ['nope']), 'MG_CREDENTIAL_MISSING: policy names credential "nope", which provider "openai" does not have')
  t.equal(await named(NOTEBOOK, ['default', 'premium']), 'MG_POLICY_ERROR: the permits that allowed the request name different credentials (default, premium)')
})

t.test('a provider with no credential refuses every request (MG_CREDENTIAL_MISSING, 403)', async (t) => {
  const { stage, store, lines } = stageFor(t, { openai: { kind: 'openai' } })
  const ctx = request({ name: 'openai', kind: 'openai' }, CHECKOUT, { authorization: 'Bearer sk-callers-own' })
  const err = await run(stage, ctx)
  t.equal(err?.code, 'MG_CREDENTIAL_MISSING')
  t.equal(err?.status, 403)
  t.equal(err?.internal, 'provider "openai" has no credential configured')
  t.ok(ctx.requestHeaderChanges.remove.has('authorization'), "the caller's key was removed all the same")
  t.same(store.withoutCredentials, ['openai'])
  t.ok(lines.some((l) => JSON.parse(l).msg.startsWith('providers without a credential')), 'said at start-up')
})

t.test('credentials that cannot be used stop start-up, all listed together, no value in the message', async (t) => {
  const dir = t.testdir({ 'blank.key': '  \n' })
  const catalog = compileCatalog({
    catalog: {
      openai: { kind: 'openai', upstream: 'https://api.openai.com', credentials: [{ name: 'a', file: 'missing.key' }, { name: 'b', file: 'blank.key' }, { name: 'c', env: 'UNSET_KEY' }, { name: 'd', env: 'SPACED_KEY' }] },
    },
  })
  const err = t.throws(() => createCredentialStore(catalog, { logger: silentLogger, resolve: (p) => join(dir, p), env: { SPACED_KEY: 'two words' }, pollMs: 1000 })) as CredentialSetupError
  t.type(err, CredentialSetupError)
  t.same(err.problems, [
    `providers.catalog.openai.credentials[0] (a): cannot read ${join(dir, 'missing.key')}: ENOENT`,
    `providers.catalog.openai.credentials[1] (b): ${join(dir, 'blank.key')} holds no usable credential (empty, or characters a header cannot carry)`,
    'providers.catalog.openai.credentials[2] (c): the environment variable UNSET_KEY is not set',
    'providers.catalog.openai.credentials[3] (d): the environment variable SPACED_KEY holds characters a header cannot carry',
  ])
  t.notMatch(err.message, /two words/)
})

t.test('the start-up log names each credential and its source, never a value', async (t) => {
  const { lines } = stageFor(t, { openai: { kind: 'openai', credentials: [file('default', 'openai.key'), { name: 'env', env: 'K' }] } }, { env: { K: 'sk-from-env-123' } })
  const ready = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'provider credentials ready')
  t.match(ready.providers.openai, [/^default \(file .*openai\.key\)$/, 'env (environment K)'])
  t.notMatch(lines.join('\n'), /sk-openai-default|sk-from-env-123/)
})

t.test('teams come from entities.json: through the workload or its namespace', async (t) => {
  const compiled = compilePolicySources(readPolicyDirSync(join(REPO_ROOT, 'policies')))
  if (!compiled.ok) throw new Error('the shipped policies do not compile')
  const set = compiled.set
  t.same([...teamsIn(set.entities, CHECKOUT, 'payments')], ['payments'], 'checkout: its namespace is in team payments')
  t.same([...teamsIn(set.entities, NOTEBOOK, 'research')], ['research'], 'notebook: the workload itself is in team research')
  t.same([...teamsIn(set.entities, 'spiffe://modelgate.local/ns/x/sa/y', 'x')], [])
})
