/** `providers`: which upstreams exist, so requests can be attributed to a provider. */
export interface ProvidersConfig {
  /**
   * Logical provider names, keyed by the `provider` value in the Envoy route's
   * `modelgate` metadata. `kind` decides how bodies are parsed; `basePaths`
   * are the prefixes the route accepts before the API's `/v1/…` path (default
   * per kind: `/openai` and `/api` for `openai`, none for the others).
   */
  routes: Record<string, { kind: 'openai' | 'anthropic' | 'azure-openai'; basePaths?: string[] }>
  /**
   * Tool types the tool map does not know (providers/tools.ts) that requests
   * may still declare, e.g. a newer dated version of a built-in tool. Every
   * other unknown type is refused (MG_TOOL_TYPE_UNKNOWN). Default (and when
   * absent from a configuration built in code): none.
   */
  allowedToolTypes?: string[]
}

/**
 * A base path: one to four literal segments, each led by `/`, no dot segments,
 * no trailing `/`, only unreserved URL characters (so it is compared exactly as sent).
 */
export const BASE_PATH_PATTERN = '^(?:/(?!\\.\\.?(?:/|$))[A-Za-z0-9._~-]{1,64}){1,4}$'

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
        properties: {
          kind: { enum: ['openai', 'anthropic', 'azure-openai'] },
          basePaths: { type: 'array', maxItems: 16, uniqueItems: true, items: { type: 'string', pattern: BASE_PATH_PATTERN } },
        },
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
