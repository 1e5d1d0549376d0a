/** `identity`: how the caller's workload identity (and an optional delegated user) is established. */
export interface IdentityConfig {
  /** SPIFFE trust domains whose workloads may call. Everything else is refused (403). */
  trustDomains: string[]
  /**
   * Read the identity from a sanitised `x-forwarded-client-cert` header. Enable only
   * when Envoy is configured with `forward_client_cert_details: SANITIZE_SET`.
   */
  trustXfcc: boolean
  /** Headers removed from every request before it goes upstream (lower-case). */
  stripHeaders: string[]
  /** Delegated human users, from a signed token in a header. */
  users: {
    enabled: boolean
    /** Required: requests without a valid token are refused. Otherwise a token is optional but must be valid when present. */
    required: boolean
    header: string
    /** JWKS file (JSON) with the issuer's public keys. */
    jwksFile: string
    issuer: string
    audience: string
    algorithms: string[]
    /** Claim that lists the user's groups. */
    groupsClaim: string
    clockToleranceSec: number
  }
}

export const identitySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['trustDomains'],
  properties: {
    trustDomains: {
      type: 'array',
      minItems: 1,
      uniqueItems: true,
      items: { type: 'string', pattern: '^[a-z0-9._-]{1,255}$' },
    },
    trustXfcc: { type: 'boolean', default: false },
    stripHeaders: {
      type: 'array',
      items: { type: 'string', pattern: '^[a-z0-9!#$%&\'*+.^_`|~-]+$' },
      default: ['x-forwarded-client-cert', 'x-spiffe-id', 'x-client-spiffe-id', 'x-modelgate-identity', 'x-modelgate-principal', 'x-ssl-client-cert', 'x-client-cert'],
    },
    users: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: false },
        required: { type: 'boolean', default: false },
        header: { type: 'string', pattern: '^[a-z0-9-]+$', default: 'x-modelgate-user-token' },
        jwksFile: { type: 'string', default: '' },
        issuer: { type: 'string', default: '' },
        audience: { type: 'string', default: 'modelgate' },
        algorithms: { type: 'array', items: { enum: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] }, minItems: 1, default: ['RS256', 'ES256', 'EdDSA'] },
        groupsClaim: { type: 'string', default: 'groups' },
        clockToleranceSec: { type: 'integer', minimum: 0, maximum: 300, default: 30 },
      },
    },
  },
} as const
