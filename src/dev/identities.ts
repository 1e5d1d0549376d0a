/** The development identities: a CA, Envoy's server certificate, and one SVID per workload. */
import { join } from 'node:path'
import { createCa, issueCertificate, type KeyPair } from './pki.ts'

export const DEV_TRUST_DOMAIN = 'modelgate.local'

/** The workloads of the local stack (namespace/service account → team in policies/entities.json). */
export const DEV_WORKLOADS = {
  checkout: `spiffe://${DEV_TRUST_DOMAIN}/ns/payments/sa/checkout`,
  notebook: `spiffe://${DEV_TRUST_DOMAIN}/ns/research/sa/notebook`,
  // An autonomous agent of the research team (the agent-… service account convention).
  assistant: `spiffe://${DEV_TRUST_DOMAIN}/ns/research/sa/agent-assistant`,
  // A security engineer's tool that grants approvals.
  approver: `spiffe://${DEV_TRUST_DOMAIN}/ns/security/sa/approver`,
} as const

export interface DevIdentity extends KeyPair {
  readonly spiffeId: string
}

export interface DevPki {
  readonly ca: KeyPair
  readonly server: KeyPair
  readonly identities: Readonly<Record<keyof typeof DEV_WORKLOADS, DevIdentity>>
}

export async function createDevPki(dir: string): Promise<DevPki> {
  const ca = await createCa(dir, 'ca')
  const server = await issueCertificate(dir, ca, { name: 'envoy', dns: ['localhost'], ips: ['127.0.0.1'] })
  const identities = {} as Record<keyof typeof DEV_WORKLOADS, DevIdentity>
  for (const [name, spiffeId] of Object.entries(DEV_WORKLOADS) as [keyof typeof DEV_WORKLOADS, string][]) {
    identities[name] = { ...(await issueCertificate(join(dir, 'svid'), ca, { name, uris: [spiffeId] })), spiffeId }
  }
  return { ca, server, identities }
}
