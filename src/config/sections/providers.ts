/** `providers`: which upstreams exist, so requests can be attributed to a provider. */
export interface ProvidersConfig {
  /**
   * Logical provider names, keyed by the `provider` value in the Envoy route's
   * `modelgate` metadata. `kind` decides how bodies are parsed.
   */
  routes: Record<string, { kind: 'openai' | 'anthropic' | 'azure-openai' }>
  /**
   * Tool types the tool map does not know (providers/tools.ts) that requests
   * may still declare, e.g. a newer dated version of a built-in tool. Every
   * other unknown type is refused (MG_TOOL_TYPE_UNKNOWN). Default (and when
   * absent from a configuration built in code): none.
   */
  allowedToolTypes?: string[]
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
    allowedToolTypes: {
      type: 'array',
      default: [],
      uniqueItems: true,
      items: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,128}$' },
    },
  },
} as const
