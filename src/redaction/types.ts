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
  /**
   * The whole text being scanned, as the detectors see it: normalised (see
   * normalize.ts), one character per UTF-8 byte, so ASCII reads as itself.
   */
  readonly text: string
  /** Offsets of the value (the redacted part) in `text`. */
  readonly start: number
  readonly end: number
  /** True when one of the detector's context words occurs near the value (whole words). */
  hasContext(): boolean
}

/**
 * A validator accepts the value (true), rejects it (false), accepts a
 * shorter prefix of it (the new length in UTF-16 units, > 0), or accepts a
 * part of it (`start`/`end` in UTF-16 units of `value`).
 */
export type Validator = (value: string, site: MatchSite) => boolean | number | { readonly start: number; readonly end: number }

/**
 * For a detector without keywords: a cheap test that every match passes, so
 * the pattern runs only around runs of digits that pass it instead of over
 * the whole text. A run is a maximal sequence of digit groups joined by at
 * most `maxGap` characters from `separators`.
 */
export interface DigitRunGate {
  readonly kind: 'digits'
  /** Characters that may separate digit groups within one run: some of space, tab, CR, LF, `.`, `-`, `(`, `)`. */
  readonly separators: string
  /** Longest run of separators between two digits (at most 4). */
  readonly maxGap: number
  /** Fewest digits (at least 4), and fewest/most digit groups, a run holding a match has. */
  readonly minDigits: number
  readonly minGroups?: number
  readonly maxGroups?: number
  /** The run comes right after this character (the `+` of an international number). */
  readonly charBefore?: string
  /** The run comes right after an ASCII capital letter, one space allowed between (IBAN, National Insurance number). */
  readonly capitalBefore?: boolean
  /** Matches start at a digit group beginning with this digit (a trunk prefix); `minDigits` counts from there. */
  readonly groupStartsWith?: string
  /** How far before the run a match can start (default 8). */
  readonly reach?: number
}

/**
 * The IPv6 shape: a maximal run of hex digits and colons, with at least
 * three non-empty groups and either "::" or seven colons.
 */
export interface HexGroupsGate {
  readonly kind: 'hex-groups'
}

/** Two ASCII capital letters and two digits at the start of a word: an IBAN's country code and check digits. */
export interface CountryCheckGate {
  readonly kind: 'country-check'
}

export type CandidateGate = DigitRunGate | HexGroupsGate | CountryCheckGate

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
  /**
   * Where a keyword must start to count: at the start of a word (not after a
   * letter, digit or `_`), of a token (not after a letter, digit, `_` or
   * `-`), or of a part of a name (not after a letter or digit: `DB_PASSWORD`
   * holds "pass" this way, "bypass" does not). Default: anywhere.
   */
  readonly keywordBoundary?: 'word' | 'token' | 'part'
  /**
   * How far into a match one of its keywords can start (UTF-16 units;
   * default `maxLength`): the pattern runs from this far before a keyword
   * hit to `maxLength` after it. 0 when the match starts with its keyword.
   */
  readonly keywordOffset?: number
  /**
   * Every match starts at one of its keywords, or one character before it
   * (the boundary character a token pattern begins with): the pattern is
   * tried there only instead of being searched for around the keyword.
   */
  readonly anchored?: boolean
  /** Detectors without keywords: where the pattern can match at all (see `CandidateGate`). */
  readonly gate?: CandidateGate
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
  /**
   * UTF-16 offsets of the value in the exact text that was scanned. A value
   * written with zero-width or other removed characters inside covers them
   * too; full-width or other folded forms cover their original characters.
   */
  readonly start: number
  readonly end: number
  /** The original text of [start, end). */
  readonly value: string
  /** Set when the value was found inside base64 text: the whole base64 run is the value. */
  readonly encoded?: 'base64'
}
