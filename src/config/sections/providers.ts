/** `providers`: which upstreams exist, so requests can be attributed to a provider. */
export interface ProvidersConfig {
  /**
   * Logical provider names, keyed by the `provider` value in the Envoy route's
   * `modelgate` metadata. `kind` decides how bodies are parsed.
   */
  routes: Record<string, { kind: 'openai' | 'anthropic' | 'azure-openai' }>
}

export const providersSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    routes: {
      type: 'object',
      default: { openai: { kind: 'openai' }, anthropic: { kind: 'anthropic' } },
      propertyNames: { pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['kind'],
        properties: { kind: { enum: ['openai', 'anthropic', 'azure-openai'] } },
      },
    },
  },
} as const
