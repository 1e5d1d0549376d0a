/**
 * What each stage hands to the stages after it. The request flows
 *
 *   identity ─▶ caller ─┐
 *   provider ─▶ target, request ─┤
 *   redaction-scan ─▶ url (and request findings) ─┤
 *                       policy ─▶ decision, facts ─▶ credentials ─▶ credential
 *                                                  ├─▶ quota ─▶ quota
 *                                                  └─▶ tool-calls (decides the response's calls)
 *   provider (response) ─▶ reply ─▶ quota settles, audit records
 *
 * Each output is written by the stage that declares it in `produces` (see
 * Stage) and read by the stages that declare it in `consumes`; the pipeline
 * checks at start-up that every consumed output has a producer before its
 * consumer, and at run time that only a producer writes it.
 */
import type { DelegatedUser, WorkloadIdentity } from '../identity/types.ts'
import type { CatalogProvider } from '../providers/catalog.ts'
import type { ApiRoute } from '../providers/routes.ts'
import type { ResponseFacts } from '../providers/apis/api.ts'
import type { ParsedRequest } from '../providers/types.ts'
import type { RequestFacts } from '../policy/request.ts'
import type { PolicyDecision, QuotaOutcome, UrlRecord } from './context.ts'

/** Who sent the request: the workload's SPIFFE identity and, when a verified token names one, the human it acts for. */
export interface Caller {
  readonly workload: WorkloadIdentity
  readonly user: DelegatedUser | undefined
}

/** Where the request goes: the API route its path matched and the catalog entry that serves it. */
export interface Target {
  readonly route: ApiRoute
  readonly provider: CatalogProvider
}

/** The provider credential attached to the request: its name and source, never its value. */
export interface CredentialChoice {
  readonly name: string
  readonly source: 'file' | 'env' | 'oauth' | 'none'
}

/** What the provider reported back: the model that answered and the tokens it counted (filled in as the response arrives). */
export type ProviderReply = ResponseFacts

export interface StageOutputs {
  /** From `identity`, at the request headers. */
  caller: Caller
  /** From `provider`, at the request headers. */
  target: Target
  /** From `provider`, at the request body: the parsed request (model after alias resolution, stream flag, budget, tools). */
  request: ParsedRequest
  /** From `redaction-scan`: what the audit trail may record of the URL (the path with findings replaced, the query's names). */
  url: UrlRecord
  /** From `policy` (model requests and MCP messages) or `approvals` (the approval API's own requests). */
  decision: PolicyDecision
  /** From `policy`, for a model request: the facts it was decided on, which the tools its response calls are decided on too. */
  facts: RequestFacts
  /** From `credentials`. */
  credential: CredentialChoice
  /** From `quota`: the rules that matched, what was reserved, and (at close) what was settled. */
  quota: QuotaOutcome
  /** From `provider`, at the response. */
  reply: ProviderReply
}

export type OutputName = keyof StageOutputs

export const OUTPUT_NAMES: readonly OutputName[] = ['caller', 'target', 'request', 'url', 'decision', 'facts', 'credential', 'quota', 'reply']

/** Which stages may write each output, fixed when the pipeline is built. */
export type OutputOwners = { readonly [K in OutputName]?: ReadonlySet<string> }

/**
 * Checks the declared flow of outputs through stages, in their order: every
 * output a stage consumes is produced by an earlier stage. Returns who may
 * write each output, or the problems, all of them.
 */
export function checkFlow(stages: readonly { readonly name: string; readonly produces?: readonly OutputName[]; readonly consumes?: readonly OutputName[] }[]): { owners: OutputOwners; problems: string[] } {
  const owners: { [K in OutputName]?: Set<string> } = {}
  const problems: string[] = []
  for (const s of stages) {
    for (const c of s.consumes ?? []) {
      if (!owners[c]) problems.push(`stage "${s.name}" consumes "${c}", which no stage before it produces`)
    }
    for (const p of s.produces ?? []) {
      if (!OUTPUT_NAMES.includes(p)) problems.push(`stage "${s.name}" produces "${p}", which is not a stage output`)
      ;(owners[p] ??= new Set()).add(s.name)
    }
  }
  return { owners, problems }
}
