/**
 * The test PKI, made once per process: the development CA, Envoy's server
 * certificate, the two workload SVIDs, and deliberately wrong client
 * certificates for the refusal tests.
 */
import { mkdtemp } from 'node:fs/promises'
import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDevPki, DEV_TRUST_DOMAIN, type DevPki } from '../../src/dev/identities.ts'
import { createCa, issueCertificate, type KeyPair } from '../../src/dev/pki.ts'

/** Client certificates the harness can present. */
export type ClientName =
  | 'checkout' // spiffe://modelgate.local/ns/payments/sa/checkout
  | 'notebook' // spiffe://modelgate.local/ns/research/sa/notebook
  | 'assistant' // spiffe://modelgate.local/ns/research/sa/agent-assistant (an agent)
  | 'approver' // spiffe://modelgate.local/ns/security/sa/approver
  | 'twoUris' // two spiffe:// URI SANs (not an SVID)
  | 'nonSpiffe' // one https:// URI SAN
  | 'foreignDomain' // spiffe://other.example/ns/payments/sa/checkout, same CA
  | 'otherCa' // a valid-looking SVID from a CA Envoy does not trust
  | 'signingLeaf' // cA=false but key usage keyCertSign: not an X.509-SVID leaf
  | 'upperCaseId' // SPIFFE://MODELGATE.LOCAL/…: upper-case scheme and trust domain

/** Shared across tests in one process: generating certificates takes a moment. */
let pkiCache: Promise<{ dir: string; pki: DevPki; clients: Record<ClientName, KeyPair & { spiffeId?: string }> }> | undefined

export async function sharedTestPki() {
  pkiCache ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'modelgate-pki-'))
    const pki = await createDevPki(dir)
    const wrong = join(dir, 'wrong')
    const twoUris = await issueCertificate(wrong, pki.ca, { name: 'two-uris', uris: [`spiffe://${DEV_TRUST_DOMAIN}/ns/payments/sa/checkout`, `spiffe://${DEV_TRUST_DOMAIN}/ns/platform/sa/admin`] })
    const nonSpiffe = await issueCertificate(wrong, pki.ca, { name: 'non-spiffe', uris: ['https://payments.example/checkout'] })
    const foreignDomain = await issueCertificate(wrong, pki.ca, { name: 'foreign-domain', uris: ['spiffe://other.example/ns/payments/sa/checkout'] })
    const signingLeaf = await issueCertificate(wrong, pki.ca, {
      name: 'signing-leaf',
      uris: [`spiffe://${DEV_TRUST_DOMAIN}/ns/payments/sa/checkout`],
      extensions: ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyCertSign'],
    })
    const upperCaseId = await issueCertificate(wrong, pki.ca, { name: 'upper-case-id', uris: [`SPIFFE://${DEV_TRUST_DOMAIN.toUpperCase()}/ns/payments/sa/checkout`] })
    const otherCa = await createCa(join(dir, 'other-ca'), 'ca', 'untrusted CA')
    const otherCaLeaf = await issueCertificate(join(dir, 'other-ca'), otherCa, { name: 'leaf', uris: [`spiffe://${DEV_TRUST_DOMAIN}/ns/payments/sa/checkout`] })
    const clients: Record<ClientName, KeyPair & { spiffeId?: string }> = {
      checkout: pki.identities.checkout,
      notebook: pki.identities.notebook,
      assistant: pki.identities.assistant,
      approver: pki.identities.approver,
      twoUris,
      nonSpiffe,
      foreignDomain,
      otherCa: otherCaLeaf,
      signingLeaf,
      upperCaseId,
    }
    process.once('exit', () => {
      rmSync(dir, { recursive: true, force: true })
    })
    return { dir, pki, clients }
  })()
  return pkiCache
}

