/**
 * Shared types of the redaction engine: detector specifications (what the
 * catalog and the configuration declare) and detections (what a scan finds).
 */

export type Confidence = 'high' | 'medium' | 'low'

/** What happens to data of one class: sent as is, replaced by a placeholder, or the request is refused. */
export type RedactionAction = 'allow' | 'redact' | 'block'

/** Numeric rank of a confidence, for comparisons and overlap resolution. */
export const CONFIDENCE_RANK: Readonly<Record<Confidence, number>> = { low: 1, medium: 2, high: 3 }

/** Where a candidate match sits, handed to validators that need surroundings or context words. */
export interface MatchSite {
  /** The whole text being scanned. */
  readonly text: string
  /** Offsets of the value (the redacted part) in `text`. */
  readonly start: number
  readonly end: number
  /** True when one of the detector's context words occurs near the value (whole words). */
  hasContext(): boolean
}

/**
 * A validator accepts the value (true), rejects it (false), or accepts a
 * shorter prefix of it (the new length in UTF-16 units, > 0).
 */
export type Validator = (value: string, site: MatchSite) => boolean | number

/** A detector as declared by the catalog or the configuration, before compilation. */
export interface DetectorSpec {
  /** Stable id, used in findings, configuration and audit records. */
  readonly id: string
  /** secret, pii, financial, health, internal, or a class the configuration defines. */
  readonly dataClass: string
  readonly confidence: Confidence
  /** Placeholder label: `[EMAIL_1]` has label EMAIL. Upper case letters, digits and `_`. */
  readonly label: string
  /** One-line description for the catalog table. */
  readonly description: string
  /** RE2 syntax. Group `group` (default 0) is the value that is reported and redacted. */
  readonly pattern: string
  /** Capture groups that may hold the value, first that participated wins. Default [0]. */
  readonly groups?: readonly number[]
  /**
   * Literals of which every match contains at least one: the prefilter runs the
   * pattern only when one occurs. Empty: the pattern runs on every text.
   * Case-insensitive unless `caseSensitiveKeywords`.
   */
  readonly keywords: readonly string[]
  readonly caseSensitiveKeywords?: boolean
  /** Upper bound on a match's length (UTF-16 units): sizes prefilter windows and the streaming hold-back. */
  readonly maxLength: number
  /**
   * For detectors whose matches may be long (PEM blocks, JWTs, bearer tokens):
   * the literal (case-insensitive) a match starts with. A streaming scan holds
   * text back from an open marker instead of holding `maxLength` characters
   * all the time. The marker stays open until `closeMarker` follows it, or,
   * without one, until the token after it (one run of spaces allowed) ends.
   */
  readonly openMarker?: string
  readonly closeMarker?: string
  /** Whole words that, near the value, make a match more certain (see `MatchSite.hasContext`). */
  readonly context?: { readonly words: readonly string[]; readonly before: number; readonly after?: number }
  /** Minimum Shannon entropy (bits per character) of the value. */
  readonly minEntropy?: number
  /** Reject values that look like placeholders or templates (`${VAR}`, `{{x}}`, "example", "xxxx", YOUR_API_KEY…). */
  readonly placeholderCheck?: boolean
  readonly validate?: Validator
  /** Custom detectors may be limited to some callers. */
  readonly scope?: DetectorScope
  /** Built-in or configured. */
  readonly origin: 'builtin' | 'custom'
}

/** Which callers a custom detector applies to; empty lists mean everyone. */
export interface DetectorScope {
  readonly namespaces: readonly string[]
  readonly spiffeIdPrefixes: readonly string[]
}

/** The caller a scan runs for (selects scoped custom detectors). */
export interface ScanSubject {
  readonly spiffeId?: string | undefined
  readonly namespace?: string | undefined
}

/** A validated match. Holds the value in memory only: it is never logged or exported. */
export interface Detection {
  readonly detector: string
  readonly dataClass: string
  readonly confidence: Confidence
  readonly label: string
  /** UTF-16 offsets of the value in the scanned text. */
  readonly start: number
  readonly end: number
  readonly value: string
  /** Set when the value was found inside base64 text: the whole base64 run is the value. */
  readonly encoded?: 'base64'
}
