/**
 * Reading the peer certificate Envoy forwards in `connection.peer_certificate`
 * (URL-encoded PEM): node:crypto's X509Certificate for the names and the
 * digest, and the RFC 5280 ASN.1 schema of @peculiar/asn1-x509 (the layer
 * under @peculiar/x509, whose own classes need a Reflect metadata polyfill)
 * for the extensions an X.509-SVID leaf is judged by.
 */
import { X509Certificate } from 'node:crypto'
import { AsnConvert } from '@peculiar/asn1-schema'
import { BasicConstraints, Certificate, id_ce_basicConstraints, id_ce_keyUsage, KeyUsage, KeyUsageFlags } from '@peculiar/asn1-x509'

export interface PeerCertificate {
  /** Every URI subject alternative name, in order. */
  readonly uris: readonly string[]
  /** The basic constraints extension: absent, or its cA flag. */
  readonly basicConstraints: { readonly ca: boolean } | undefined
  /** Key usages the certificate asserts (`digitalSignature`, `keyCertSign`, …); undefined without the extension. */
  readonly keyUsage: readonly string[] | undefined
  readonly isCA: boolean
  readonly sha256: string
  readonly notAfter: Date
}

const USAGE_NAMES: readonly [KeyUsageFlags, string][] = [
  [KeyUsageFlags.digitalSignature, 'digitalSignature'],
  [KeyUsageFlags.nonRepudiation, 'nonRepudiation'],
  [KeyUsageFlags.keyEncipherment, 'keyEncipherment'],
  [KeyUsageFlags.dataEncipherment, 'dataEncipherment'],
  [KeyUsageFlags.keyAgreement, 'keyAgreement'],
  [KeyUsageFlags.keyCertSign, 'keyCertSign'],
  [KeyUsageFlags.cRLSign, 'cRLSign'],
  [KeyUsageFlags.encipherOnly, 'encipherOnly'],
  [KeyUsageFlags.decipherOnly, 'decipherOnly'],
]

/**
 * Why a certificate is not an X.509-SVID leaf, or undefined when it is one as
 * far as its extensions go. The X.509-SVID specification (sections 4.1 and
 * 4.3): a leaf carries the basic constraints extension with cA false, and its
 * key usage must not include keyCertSign or cRLSign. A certificate that could
 * sign other certificates is not a workload's identity.
 */
export function leafProblem(cert: PeerCertificate): string | undefined {
  if (!cert.basicConstraints) return 'peer certificate has no basic constraints extension; an X.509-SVID leaf must have one with cA=false'
  if (cert.basicConstraints.ca) return 'peer certificate is a CA certificate (cA=true)'
  const signing = (cert.keyUsage ?? []).filter((u) => u === 'keyCertSign' || u === 'cRLSign')
  if (signing.length > 0) return `peer certificate key usage includes ${signing.join(' and ')}; an X.509-SVID leaf must not`
  return undefined
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
  let basicConstraints: PeerCertificate['basicConstraints']
  let keyUsage: PeerCertificate['keyUsage']
  try {
    for (const ext of AsnConvert.parse(cert.raw, Certificate).tbsCertificate.extensions ?? []) {
      if (ext.extnID === id_ce_basicConstraints) basicConstraints = { ca: AsnConvert.parse(ext.extnValue, BasicConstraints).cA }
      else if (ext.extnID === id_ce_keyUsage) {
        const flags = AsnConvert.parse(ext.extnValue, KeyUsage).toNumber()
        keyUsage = USAGE_NAMES.filter(([flag]) => (flags & flag) !== 0).map(([, name]) => name)
      }
    }
  } catch (err) {
    return { ok: false, reason: `peer certificate extensions do not parse: ${(err as Error).message}` }
  }
  return {
    ok: true,
    value: {
      uris,
      basicConstraints,
      keyUsage,
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
