/** `mcp`: MCP servers behind modelgate (catalog entries of kind `mcp`), agent sessions and human approvals. */
export interface McpConfig {
  /** Tools whose declared hints (tools/list annotations) are remembered, over all servers. */
  hintsCacheSize: number
  /** Longest tool-call arguments (canonical JSON, bytes) passed to policy as `context.arguments`; longer ones pass only their digest. */
  maxArgumentsBytes: number
  /** Agent sessions (MCP session id, or the session header) whose data flow is remembered, per caller. */
  sessions: {
    /** Most sessions remembered; the least recently used is forgotten first. */
    maxSessions: number
    /** A session untouched this long is forgotten (seconds). */
    ttlSeconds: number
    /** The request header that names a session where MCP has none (2026-07-28, model requests). */
    header: string
  }
  /** Human approvals of calls whose permit carries `@requires_approval("reason")`. */
  approvals: {
    /** A pending approval, and a grant, expire this long after they were made (seconds). */
    ttlSeconds: number
    /** Most pending approvals and grants kept; beyond it the oldest are dropped. */
    maxEntries: number
  }
}

export const mcpSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    hintsCacheSize: { type: 'integer', minimum: 1, maximum: 1000000, default: 10000 },
    maxArgumentsBytes: { type: 'integer', minimum: 0, maximum: 65536, default: 8192 },
    sessions: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxSessions: { type: 'integer', minimum: 1, maximum: 10000000, default: 10000 },
        ttlSeconds: { type: 'integer', minimum: 1, maximum: 604800, default: 3600 },
        header: { type: 'string', pattern: '^[a-z0-9-]{1,64}$', default: 'x-modelgate-session' },
      },
    },
    approvals: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        ttlSeconds: { type: 'integer', minimum: 1, maximum: 86400, default: 900 },
        maxEntries: { type: 'integer', minimum: 1, maximum: 1000000, default: 10000 },
      },
    },
  },
} as const
