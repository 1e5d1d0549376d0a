/** `policy`: the Cedar policy set that authorises every request. */
export interface PolicyConfig {
  /** Directory holding `*.cedar`, `*.cedarschema` and `entities.json`. */
  dir: string
  /** Optional second policy set evaluated and recorded but never enforced ('' for none). */
  shadowDir: string
  /** Reload the policy set when files in `dir` (or `shadowDir`) change. */
  watch: boolean
  /** Decision cache entries (0 disables the cache). */
  cacheSize: number
  /** Quiet time after a change before reloading, in milliseconds. */
  reloadDebounceMs: number
  /** With `watch`, also re-read the directories this often (seconds; 0 = never) in case a change event was missed. */
  pollIntervalSeconds: number
  /** This deployment's region, passed to policies as `context.region` ('' when unset). */
  region: string
  /** Request headers whose values become `context.tenant`, `context.purpose` and `context.clientApp`. */
  contextHeaders: {
    tenant: string
    purpose: string
    clientApp: string
  }
}

const headerName = { type: 'string', pattern: '^[a-z0-9!#$%&\'*+.^_`|~-]+$' } as const

export const policySchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    dir: { type: 'string', minLength: 1, default: 'policies' },
    shadowDir: { type: 'string', default: '' },
    watch: { type: 'boolean', default: true },
    cacheSize: { type: 'integer', minimum: 0, maximum: 10000000, default: 100000 },
    reloadDebounceMs: { type: 'integer', minimum: 0, maximum: 60000, default: 250 },
    pollIntervalSeconds: { type: 'integer', minimum: 0, maximum: 86400, default: 30 },
    region: { type: 'string', maxLength: 64, default: '' },
    contextHeaders: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        tenant: { ...headerName, default: 'x-modelgate-tenant' },
        purpose: { ...headerName, default: 'x-modelgate-purpose' },
        clientApp: { ...headerName, default: 'x-modelgate-client-app' },
      },
    },
  },
} as const
