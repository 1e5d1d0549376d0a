/**
 * Short-lived provider credentials: an OAuth 2.0 client-credentials grant
 * (RFC 6749 §4.4) against a token endpoint, the client authenticated by its
 * TLS client certificate (RFC 8705 §2, `tls_client_auth`): the gateway's
 * SVID, read from its files for every token request, so a rotated SVID is
 * used as soon as it is on disk.
 *
 * A token is kept until shortly before it expires and replaced in the
 * background before then, so requests do not wait for the endpoint. At most
 * one token request is in flight (every caller that needs a token shares
 * it). When no valid token can be had — the endpoint refuses, is down or
 * answers something unusable, and the last token has expired — requests are
 * refused (MG_CREDENTIAL_UNAVAILABLE) and the endpoint is asked again after a
 * growing pause, not once per request.
 */
import { request as httpsRequest } from 'node:https'
import { readFile } from 'node:fs/promises'
import { GateError } from '../errors.ts'
import type { Logger } from '../log.ts'
import type { OAuthCredentialConfig } from '../config/sections/providers.ts'
import { validSecret } from './headers.ts'

/** A token is not used in its last seconds (clock skew, the request's own time on the way): 10 s, or a tenth of a short lifetime. */
const EXPIRY_MARGIN_MS = 10_000
/** When the endpoint gives no lifetime (`expires_in` is only recommended by RFC 6749). */
const DEFAULT_LIFETIME_S = 300
const RETRY_MIN_MS = 1_000
const RETRY_MAX_MS = 30_000
/** Largest token response read. */
const MAX_RESPONSE_BYTES = 64 * 1024

export interface TokenSourceOptions {
  readonly config: OAuthCredentialConfig
  /** Names the credential in log lines (`<provider>/<credential>`). */
  readonly label: string
  readonly logger: Logger
  /** Resolves a file path of the configuration. */
  readonly resolve: (path: string) => string
  /** Monotonic milliseconds (tests move time). Default performance.now. */
  readonly now?: () => number
}

interface Token {
  readonly value: string
  /** Monotonic times: no longer used after `expiresAt`, replaced from `refreshAt`. */
  readonly expiresAt: number
  readonly refreshAt: number
}

/** Why a token request failed, in words safe for logs (never the response body). */
class TokenError extends Error {}

export class TokenSource {
  readonly #opts: TokenSourceOptions
  readonly #now: () => number
  #token: Token | undefined
  #inflight: Promise<Token> | undefined
  #failures = 0
  /** No new attempt before this (after a failure), unless a valid token makes one unnecessary. */
  #nextAttemptAt = 0
  #lastError: string | undefined
  #timer: NodeJS.Timeout | undefined
  #closed = false
  /** Token requests sent (tests and the log). */
  requests = 0

  constructor(opts: TokenSourceOptions) {
    this.#opts = opts
    this.#now = opts.now ?? (() => performance.now())
  }

  /** Asks for a first token in the background (a failure is logged, and retried). */
  start(): void {
    void this.#fetch().catch(() => {})
  }

  /**
   * The current token, or a promise of one when none is valid and the
   * endpoint may be asked; throws (or rejects with) MG_CREDENTIAL_UNAVAILABLE.
   */
  get(): string | Promise<string> {
    const now = this.#now()
    const t = this.#token
    if (t && now < t.expiresAt) {
      if (now >= t.refreshAt && !this.#inflight && now >= this.#nextAttemptAt) void this.#fetch().catch(() => {})
      return t.value
    }
    if (this.#inflight) return this.#inflight.then((x) => x.value, () => Promise.reject(this.#unavailable()))
    if (now < this.#nextAttemptAt) throw this.#unavailable()
    return this.#fetch().then((x) => x.value, () => Promise.reject(this.#unavailable()))
  }

  #unavailable(): GateError {
    return new GateError('MG_CREDENTIAL_UNAVAILABLE', { internal: `credential ${this.#opts.label}: no valid token (${this.#lastError ?? 'the token endpoint has not answered yet'})` })
  }

  /** One token request; concurrent callers share it. */
  #fetch(): Promise<Token> {
    if (this.#closed) return Promise.reject(new TokenError('closed'))
    this.#inflight ??= this.#request().then(
      (token) => {
        this.#inflight = undefined
        this.#token = token
        this.#failures = 0
        this.#nextAttemptAt = 0
        if (this.#lastError !== undefined) this.#opts.logger.info('token endpoint answers again', { credential: this.#opts.label })
        this.#lastError = undefined
        this.#schedule(token.refreshAt - this.#now())
        return token
      },
      (err: unknown) => {
        this.#inflight = undefined
        const reason = err instanceof TokenError ? err.message : 'the token request failed'
        const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(this.#failures, 10))
        this.#failures++
        this.#nextAttemptAt = this.#now() + delay
        const valid = this.#token !== undefined && this.#now() < this.#token.expiresAt
        // Logged when it starts failing and every tenth time after, not for every retry.
        if (this.#failures === 1 || this.#failures % 10 === 0) {
          this.#opts.logger[valid ? 'warn' : 'error']('token request failed', {
            credential: this.#opts.label,
            endpoint: endpointOf(this.#opts.config.tokenUrl),
            reason,
            failures: this.#failures,
            retry_ms: delay,
            still_valid: valid,
          })
        }
        this.#lastError = reason
        this.#schedule(delay)
        throw err
      },
    )
    return this.#inflight
  }

  /** The next background attempt (refresh or retry). */
  #schedule(ms: number): void {
    if (this.#closed) return
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => void this.#fetch().catch(() => {}), Math.max(0, ms))
    this.#timer.unref()
  }

  async #request(): Promise<Token> {
    const c = this.#opts.config
    let cert: Buffer
    let key: Buffer
    let ca: Buffer | undefined
    try {
      ;[cert, key, ca] = await Promise.all([readFile(this.#opts.resolve(c.certFile)), readFile(this.#opts.resolve(c.keyFile)), c.caFile ? readFile(this.#opts.resolve(c.caFile)) : undefined])
    } catch (err) {
      throw new TokenError(`cannot read the client certificate, key or CA file (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: c.clientId })
    if (c.scope) form.set('scope', c.scope)
    if (c.audience) form.set('audience', c.audience)
    if (c.resource) form.set('resource', c.resource)
    for (const [k, v] of Object.entries(c.params ?? {})) form.set(k, v)
    const body = Buffer.from(form.toString())
    this.requests++
    const sentAt = this.#now()
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpsRequest(
        c.tokenUrl,
        {
          method: 'POST',
          cert,
          key,
          ...(ca ? { ca } : {}),
          agent: false,
          timeout: c.timeoutMs,
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'content-length': String(body.length) },
        },
        (res) => {
          const chunks: Buffer[] = []
          let size = 0
          res.on('data', (d: Buffer) => {
            size += d.length
            if (size > MAX_RESPONSE_BYTES) req.destroy(new TokenError('the token response is too large'))
            else chunks.push(d)
          })
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
          res.on('error', (err) => reject(err))
        },
      )
      req.on('timeout', () => req.destroy(new TokenError(`no answer within ${c.timeoutMs} ms`)))
      req.on('error', (err) => reject(err instanceof TokenError ? err : new TokenError(`the token endpoint cannot be reached (${(err as NodeJS.ErrnoException).code ?? err.message})`)))
      req.end(body)
    })
    let json: Record<string, unknown> | undefined
    try {
      const v = JSON.parse(text) as unknown
      if (v && typeof v === 'object' && !Array.isArray(v)) json = v as Record<string, unknown>
    } catch {
      json = undefined
    }
    if (status !== 200) {
      // RFC 6749 §5.2: `error` is an ASCII code; it is repeated only when it reads like one. The description is not.
      const code = typeof json?.error === 'string' && /^[a-z_]{1,64}$/.test(json.error) ? ` (${json.error})` : ''
      throw new TokenError(`the token endpoint answered ${status}${code}`)
    }
    const value = json?.access_token
    if (typeof value !== 'string' || !validSecret(value)) throw new TokenError('the token response carries no usable access_token')
    const type = json?.token_type
    if (type !== undefined && (typeof type !== 'string' || type.toLowerCase() !== 'bearer')) throw new TokenError('the token response is not a bearer token')
    const lifetimeS = lifetimeOf(json?.expires_in)
    if (lifetimeS === undefined) throw new TokenError('the token response has an unusable expires_in')
    const lifetimeMs = lifetimeS * 1000
    // Never used in its last moments; replaced ahead of time, at most half its lifetime early.
    const expiresAt = sentAt + lifetimeMs - Math.min(EXPIRY_MARGIN_MS, lifetimeMs / 10)
    const refreshAt = Math.min(expiresAt, sentAt + Math.max(lifetimeMs / 2, lifetimeMs - c.refreshBeforeSeconds * 1000))
    return { value, expiresAt, refreshAt }
  }

  close(): void {
    this.#closed = true
    clearTimeout(this.#timer)
  }
}

/** `expires_in` in seconds: a positive number, or a string of digits (Entra's v1 endpoint); absent: a default. */
function lifetimeOf(v: unknown): number | undefined {
  if (v === undefined || v === null) return DEFAULT_LIFETIME_S
  const n = typeof v === 'string' && /^\d{1,9}$/.test(v) ? Number(v) : typeof v === 'number' ? v : NaN
  return Number.isFinite(n) && n > 0 ? n : undefined
}

/** The endpoint's origin and path, for log lines (never a query). */
export function endpointOf(url: string): string {
  const u = new URL(url)
  return `${u.origin}${u.pathname}`
}
