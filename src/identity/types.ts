/** A workload identity taken from an X.509-SVID (the mTLS peer certificate). */
export interface WorkloadIdentity {
  /** The SPIFFE ID as the certificate carries it (scheme and trust domain are lower case in every valid ID). */
  readonly spiffeId: string
  readonly trustDomain: string
  /** The path part, starting with '/', or '' for a trust-domain-only ID. */
  readonly path: string
  /** Kubernetes convention `/ns/<namespace>/sa/<service-account>`; undefined otherwise. */
  readonly namespace: string | undefined
  readonly serviceAccount: string | undefined
  /** Where the identity came from: Envoy's connection attributes or a sanitised XFCC header. */
  readonly source: 'mtls' | 'xfcc'
  /** SHA-256 of the peer certificate (hex), when Envoy provided it. */
  readonly certificateSha256: string | undefined
}

/** A human on whose behalf the workload acts, from a verified token. */
export interface DelegatedUser {
  readonly subject: string
  readonly issuer: string
  readonly email: string | undefined
  readonly groups: readonly string[]
  /**
   * The agent acting for the user: the `sub` of the token's `act` claim (RFC
   * 8693 §4.1; the outermost `act` is the current actor). Absent when the
   * token names none.
   */
  readonly actor?: string
}
