/** `policy`: the Cedar policy set that authorises every request. */
export interface PolicyConfig {
  /** Directory holding `*.cedar`, `*.cedarschema` and `entities.json`. */
  dir: string
  /** Optional second policy set evaluated and recorded but never enforced. */
  shadowDir: string
  /** Reload the policy set when files in `dir` change. */
  watch: boolean
  /** Decision cache entries (0 disables the cache). */
  cacheSize: number
}

export const policySchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    dir: { type: 'string', minLength: 1, default: 'policies' },
    shadowDir: { type: 'string', default: '' },
    watch: { type: 'boolean', default: true },
    cacheSize: { type: 'integer', minimum: 0, maximum: 10000000, default: 100000 },
  },
} as const
