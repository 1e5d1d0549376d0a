/**
 * Reading the peer certificate Envoy forwards in `connection.peer_certificate`
 * (URL-encoded PEM), with node:crypto's X509Certificate.
 */
import { X509Certificate } from 'node:crypto'

export interface PeerCertificate {
  /** Every URI subject alternative name, in order. */
  readonly uris: readonly string[]
  readonly isCA: boolean
  readonly sha256: string
  readonly notAfter: Date
}

export type CertificateResult = { readonly ok: true; readonly value: PeerCertificate } | { readonly ok: false; readonly reason: string }

/** Decodes Envoy's URL-encoded PEM and extracts what identity needs. */
export function readPeerCertificate(urlEncodedPem: string): CertificateResult {
  let pem: string
  try {
    pem = decodeURIComponent(urlEncodedPem)
  } catch {
    return { ok: false, reason: 'peer certificate is not valid URL-encoding' }
  }
  let cert: X509Certificate
  try {
    cert = new X509Certificate(pem)
  } catch (err) {
    return { ok: false, reason: `peer certificate does not parse: ${(err as Error).message}` }
  }
  const sans = splitSubjectAltName(cert.subjectAltName ?? '')
  if (!sans) return { ok: false, reason: 'subjectAltName does not parse' }
  const uris = sans.filter((s) => s.type === 'URI').map((s) => s.value)
  return {
    ok: true,
    value: {
      uris,
      isCA: cert.ca,
      sha256: cert.fingerprint256.replaceAll(':', '').toLowerCase(),
      notAfter: new Date(cert.validTo),
    },
  }
}

/**
 * Splits Node's subjectAltName string ("DNS:a, URI:spiffe://b"). Node writes
 * values containing separators as JSON strings ("URI:\"a, b\""), which are
 * decoded here; anything else unexpected yields undefined.
 */
export function splitSubjectAltName(s: string): { type: string; value: string }[] | undefined {
  const out: { type: string; value: string }[] = []
  let i = 0
  while (i < s.length) {
    const colon = s.indexOf(':', i)
    if (colon === -1) return undefined
    const type = s.slice(i, colon)
    i = colon + 1
    let value: string
    if (s[i] === '"') {
      let j = i + 1
      while (j < s.length && s[j] !== '"') j += s[j] === '\\' ? 2 : 1
      if (j >= s.length) return undefined
      try {
        value = JSON.parse(s.slice(i, j + 1)) as string
      } catch {
        return undefined
      }
      i = j + 1
    } else {
      const end = s.indexOf(', ', i)
      value = end === -1 ? s.slice(i) : s.slice(i, end)
      i = end === -1 ? s.length : end
    }
    out.push({ type, value })
    if (i < s.length) {
      if (s.slice(i, i + 2) !== ', ') return undefined
      i += 2
    }
  }
  return out
}
