/**
 * Which request headers carry credentials, and where a provider's own goes.
 */
import type { CredentialConfig, ProviderKindName } from '../config/sections/providers.ts'

/**
 * Headers a caller might send a credential, session or billing account in.
 * modelgate removes every one of them from every request: the provider's own
 * credential is modelgate's to attach, and none of the caller's is ever
 * forwarded (nor scanned by redaction: it never leaves). `openai-organization`
 * and `openai-project` choose the account a request is billed to; a
 * credential may set them itself (its `headers`).
 */
export const CALLER_CREDENTIAL_HEADERS: readonly string[] = Object.freeze([
  'authorization',
  'proxy-authorization',
  'cookie',
  'x-api-key',
  'api-key',
  'anthropic-api-key',
  'x-goog-api-key',
  'ocp-apim-subscription-key',
  'openai-organization',
  'openai-project',
])

/** The Anthropic API version sent when the caller names none (Anthropic requires the header). */
export const ANTHROPIC_VERSION = '2023-06-01'

export interface CredentialHeader {
  readonly name: string
  /** Written before the secret: `Bearer ` for `authorization`, else nothing. */
  readonly prefix: string
}

/**
 * Where a credential goes: its configured `header`, else the provider's own
 * convention: OpenAI and OpenAI-compatible servers read `authorization:
 * Bearer`, Anthropic `x-api-key`, Azure OpenAI `api-key`; an OAuth access
 * token is a bearer token (`authorization`) whatever the kind.
 */
export function credentialHeader(kind: ProviderKindName, c: Pick<CredentialConfig, 'header' | 'oauth'>): CredentialHeader {
  const name = c.header ?? (c.oauth ? 'authorization' : kind === 'anthropic' ? 'x-api-key' : kind === 'azure-openai' ? 'api-key' : 'authorization')
  return { name, prefix: name === 'authorization' ? 'Bearer ' : '' }
}

/** A secret a header can carry: visible ASCII, no spaces, at most 16 KiB. */
export function validSecret(value: string): boolean {
  return value.length > 0 && value.length <= 16384 && /^[!-~]+$/.test(value)
}
