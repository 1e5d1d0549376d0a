/**
 * The identity stage: establishes who is calling before anything else looks at
 * the request. The workload identity is the SPIFFE ID of the mTLS peer
 * certificate, read from Envoy's connection attributes, or (only when
 * configured) from a sanitised x-forwarded-client-cert header. Client-supplied
 * identity headers never reach the upstream.
 */
import { LRUCache } from 'lru-cache'
import { GateError } from '../errors.ts'
import type { IdentityConfig } from '../config/sections/identity.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { Stage } from '../pipeline/stage.ts'
import { leafProblem, readPeerCertificate } from './certificate.ts'
import { kubernetesParts, parseSpiffeId } from './spiffe.ts'
import type { WorkloadIdentity } from './types.ts'
import type { UserVerifier } from './user.ts'
import { parseXfcc } from './xfcc.ts'

/** Envoy attributes the stage reads (list them in the filter's request_attributes). */
export const IDENTITY_ATTRIBUTES = [
  'connection.mtls',
  'connection.uri_san_peer_certificate',
  'connection.peer_certificate',
  'connection.sha256_peer_certificate_digest',
] as const

type Resolved = { ok: true; identity: WorkloadIdentity } | { ok: false; error: GateError }
/** What one peer certificate resolves to, and its single URI SAN when it has exactly one. */
type CertificateEntry = { resolved: Resolved; uri: string | undefined }

export interface IdentityStageOptions {
  readonly config: IdentityConfig
  readonly users?: UserVerifier | undefined
}

export function createIdentityStage(opts: IdentityStageOptions): Stage {
  const cfg = opts.config
  const trusted = new Set(cfg.trustDomains)
  const strip = [...new Set([...cfg.stripHeaders, ...(opts.users ? [opts.users.header] : [])])]
  // One certificate is presented by many requests: resolve it once.
  const byCertificate = new LRUCache<string, CertificateEntry>({ max: 10_000 })

  const fromSpiffe = (uri: string, source: 'mtls' | 'xfcc', sha256: string | undefined): Resolved => {
    const parsed = parseSpiffeId(uri)
    if (!parsed.ok) return { ok: false, error: new GateError('MG_IDENTITY_INVALID', { internal: `SPIFFE ID rejected: ${parsed.reason}` }) }
    const id = parsed.value
    if (!trusted.has(id.trustDomain)) {
      return { ok: false, error: new GateError('MG_IDENTITY_UNTRUSTED', { internal: `trust domain ${id.trustDomain} is not in identity.trustDomains` }) }
    }
    const k8s = kubernetesParts(id.segments)
    return {
      ok: true,
      identity: Object.freeze({
        spiffeId: id.id,
        trustDomain: id.trustDomain,
        path: id.path,
        namespace: k8s?.namespace,
        serviceAccount: k8s?.serviceAccount,
        source,
        certificateSha256: sha256,
      }),
    }
  }

  // Depends on the certificate alone, so it can be cached per certificate.
  const fromCertificate = (pem: string): CertificateEntry => {
    const invalid = (internal: string): CertificateEntry => ({ resolved: { ok: false, error: new GateError('MG_IDENTITY_INVALID', { internal }) }, uri: undefined })
    const cert = readPeerCertificate(pem)
    if (!cert.ok) return invalid(cert.reason)
    const { uris, sha256 } = cert.value
    const notLeaf = leafProblem(cert.value)
    if (notLeaf) return invalid(notLeaf)
    if (uris.length !== 1) return invalid(`peer certificate has ${uris.length} URI SANs; an X.509-SVID has exactly one`)
    return { resolved: fromSpiffe(uris[0]!, 'mtls', sha256), uri: uris[0]! }
  }

  const fromXfcc = (header: string): Resolved => {
    const parsed = parseXfcc(header)
    if (!parsed.ok) return { ok: false, error: new GateError('MG_IDENTITY_INVALID', { internal: `x-forwarded-client-cert: ${parsed.reason}` }) }
    // Only the last element was added by the Envoy in front of modelgate.
    const last = parsed.elements[parsed.elements.length - 1]!
    const uris = last.get('uri') ?? []
    if (uris.length !== 1) {
      return { ok: false, error: new GateError('MG_IDENTITY_INVALID', { internal: `x-forwarded-client-cert has ${uris.length} URI SANs; expected exactly one` }) }
    }
    const hash = last.get('hash')?.[0]
    return fromSpiffe(uris[0]!, 'xfcc', hash && /^[0-9a-f]{64}$/i.test(hash) ? hash.toLowerCase() : undefined)
  }

  const resolve = (ctx: RequestContext): Resolved => {
    const mtls = ctx.attributes.get('connection.mtls') === true
    const pem = ctx.attributes.get('connection.peer_certificate')
    if (mtls && typeof pem === 'string' && pem.length > 0) {
      let entry = byCertificate.get(pem)
      if (!entry) {
        entry = fromCertificate(pem)
        byCertificate.set(pem, entry)
      }
      // Checked per request: the cache entry must not carry one request's attribute over to the next.
      const uriAttr = ctx.attributes.get('connection.uri_san_peer_certificate')
      if (entry.uri !== undefined && typeof uriAttr === 'string' && uriAttr !== '' && uriAttr !== entry.uri) {
        return { ok: false, error: new GateError('MG_IDENTITY_INVALID', { internal: 'URI SAN attribute disagrees with the peer certificate' }) }
      }
      return entry.resolved
    }
    if (mtls) return { ok: false, error: new GateError('MG_IDENTITY_INVALID', { internal: 'connection is mTLS but Envoy sent no connection.peer_certificate attribute' }) }
    const xfcc = ctx.requestHeaders.get('x-forwarded-client-cert')
    if (cfg.trustXfcc && xfcc) return fromXfcc(xfcc)
    return { ok: false, error: new GateError('MG_IDENTITY_MISSING', { internal: 'no mTLS peer certificate' + (cfg.trustXfcc ? ' and no x-forwarded-client-cert' : '') }) }
  }

  return {
    name: 'identity',
    produces: ['caller'],
    async requestHeaders(ctx) {
      for (const h of strip) if (ctx.requestHeaders.has(h)) ctx.requestHeaderChanges.removeHeader(h)
      const r = resolve(ctx)
      if (!r.ok) throw r.error
      // Put before the user token is checked: a refused token is still recorded with the workload that sent it.
      ctx.put('caller', { workload: r.identity, user: undefined })
      if (opts.users) {
        const token = ctx.requestHeaders.get(opts.users.header)
        if (token) ctx.put('caller', { workload: r.identity, user: await opts.users.verify(token) })
        else if (opts.users.required) throw new GateError('MG_USER_TOKEN_INVALID', { internal: `no ${opts.users.header} header` })
      }
    },
  }
}
