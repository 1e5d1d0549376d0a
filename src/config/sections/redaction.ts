/** `redaction`: detectors and what happens to the data they find. */

export type RedactionActionSetting = 'allow' | 'redact' | 'block'

/** A detector defined by the organisation: an RE2 pattern or a dictionary of words. */
export interface CustomDetectorConfig {
  /** Stable id; must not clash with a built-in detector. */
  id: string
  /** Data class reported to policy: a built-in class or one of your own (`[a-z][a-z0-9_-]*`). */
  dataClass: string
  confidence: 'high' | 'medium' | 'low'
  /** Placeholder label (`[PROJECT_1]`); default: the id upper-cased. */
  label?: string
  description?: string
  /** RE2 syntax (no backreferences or lookaround). Exactly one of `pattern` and `words`. */
  pattern?: string
  /** Whole words or phrases, matched case-insensitively. */
  words?: string[]
  /** Capture group holding the value (default 0: the whole match). */
  group?: number
  /** Literals every match contains; when given, the pattern runs only where one occurs. */
  keywords?: string[]
  caseInsensitive: boolean
  /** Upper bound on a match's length; sizes the streaming hold-back. */
  maxLength: number
  minEntropy?: number
  /** Limit the detector to callers in these Kubernetes namespaces / SPIFFE ID prefixes (empty: everyone). */
  namespaces: string[]
  spiffeIdPrefixes: string[]
}

export interface RedactionConfig {
  enabled: boolean
  /** Built-in detector ids to turn off. */
  disabledDetectors: string[]
  /** Detections below this confidence are ignored. */
  minConfidence: 'low' | 'medium' | 'high'
  /** Request direction: action per data class (policy may still permit a class unredacted). */
  actions: Record<string, RedactionActionSetting>
  /** Action for classes not listed in `actions` (custom classes). */
  defaultAction: RedactionActionSetting
  /** Per-detector overrides of the class action. */
  detectorActions: Record<string, RedactionActionSetting>
  /** Decode base64 runs of at least this many characters and scan what they hold with every detector (0 disables). */
  base64MinLength: number
  /**
   * Key for the salted hashes in findings (HMAC-SHA256). Empty: a random key
   * per process, so hashes correlate within one replica's lifetime only. Set
   * it (or `hashSaltEnv`) to correlate across replicas and restarts.
   */
  hashSalt: string
  /** Name of an environment variable holding the salt (wins over `hashSalt` when set and non-empty). */
  hashSaltEnv: string
  /** Put the caller's own values back in place of placeholders in the response. */
  restore: { enabled: boolean; providers: string[] }
  responses: {
    enabled: boolean
    actions: Record<string, RedactionActionSetting>
    defaultAction: RedactionActionSetting
    /** Largest decoded size of a compressed response body (decompression-bomb limit). */
    maxDecodedBytes: number
    /**
     * Provider names (the route's provider, or the API kind) whose binary
     * response bodies (not UTF-8 text) may pass unscanned. Others' binary
     * bodies are withheld (MG_RESPONSE_BINARY).
     */
    binaryProviders: string[]
  }
  custom: CustomDetectorConfig[]
  /**
   * Request headers scanned like the body (the path and query always are).
   * `scan` and `skip` hold names or patterns (`*` matches any run of
   * characters); a header is scanned when some `scan` entry matches it and no
   * `skip` entry does, and it is not one modelgate never scans (credentials,
   * pseudo-headers and headers Envoy or modelgate set; see the README).
   */
  headers: { scan: string[]; skip: string[]; action: 'block' | 'strip' }
  /** The query string: what happens to a parameter holding data of a class to be redacted. */
  query: { action: 'block' | 'remove' }
}

const action = { enum: ['allow', 'redact', 'block'] } as const
/** A header name (lower case, as HTTP/2 sends it) or a pattern of one with `*` wildcards. */
const HEADER_PATTERN = "^[a-z0-9!#$%&'*+.^_`|~-]{1,128}$"
const CLASS_NAME = '^[a-z][a-z0-9_-]{0,31}$'
const DEFAULT_ACTIONS = { secret: 'redact', pii: 'redact', financial: 'redact', health: 'redact', internal: 'redact' }
/** Action per data class; the same shape for requests and responses. */
const classActions = { type: 'object', propertyNames: { pattern: CLASS_NAME }, additionalProperties: action, default: DEFAULT_ACTIONS } as const

export const redactionSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    enabled: { type: 'boolean', default: true },
    disabledDetectors: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
    minConfidence: { enum: ['low', 'medium', 'high'], default: 'low' },
    actions: classActions,
    defaultAction: { ...action, default: 'redact' },
    detectorActions: { type: 'object', additionalProperties: action, default: {} },
    base64MinLength: { type: 'integer', minimum: 0, maximum: 4096, default: 16 },
    hashSalt: { type: 'string', default: '' },
    hashSaltEnv: { type: 'string', default: 'MODELGATE_REDACTION_SALT' },
    restore: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: false },
        providers: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
      },
    },
    responses: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        actions: classActions,
        defaultAction: { ...action, default: 'redact' },
        maxDecodedBytes: { type: 'integer', minimum: 1024, maximum: 1073741824, default: 16777216 },
        binaryProviders: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
      },
    },
    headers: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        scan: { type: 'array', items: { type: 'string', pattern: HEADER_PATTERN }, default: ['*'] },
        skip: { type: 'array', items: { type: 'string', pattern: HEADER_PATTERN }, default: [] },
        action: { enum: ['block', 'strip'], default: 'block' },
      },
    },
    query: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        action: { enum: ['block', 'remove'], default: 'block' },
      },
    },
    custom: {
      type: 'array',
      default: [],
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'dataClass', 'confidence'],
        properties: {
          id: { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' },
          dataClass: { type: 'string', pattern: CLASS_NAME },
          confidence: { enum: ['high', 'medium', 'low'] },
          label: { type: 'string', pattern: '^[A-Z][A-Z0-9_]{0,31}$' },
          description: { type: 'string' },
          pattern: { type: 'string', minLength: 1, maxLength: 4096 },
          words: { type: 'array', minItems: 1, maxItems: 10000, items: { type: 'string', minLength: 1, maxLength: 200 } },
          group: { type: 'integer', minimum: 0, maximum: 20 },
          keywords: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 100 } },
          caseInsensitive: { type: 'boolean', default: false },
          maxLength: { type: 'integer', minimum: 1, maximum: 16384, default: 256 },
          minEntropy: { type: 'number', minimum: 0, maximum: 8 },
          namespaces: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
          spiffeIdPrefixes: { type: 'array', items: { type: 'string', pattern: '^spiffe://' }, default: [] },
        },
      },
    },
  },
} as const
