/**
 * An OAuth 2.0 token endpoint for tests, on loopback: HTTPS that requires a
 * client certificate chained to the test CA (RFC 8705 `tls_client_auth`: the
 * client is known by its certificate's URI SAN), answering the
 * client-credentials grant (RFC 6749 §4.4) with fresh opaque tokens. Tests
 * set the token lifetime, make it refuse, stall or go away, and read back
 * every request it took.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'

export interface TokenRequestSeen {
  readonly form: Record<string, string>
  /** The client certificate's URI SAN and serial number. */
  readonly clientUri: string | undefined
  readonly clientSerial: string
  readonly at: number
}

export interface TokenEndpointOptions {
  readonly ca: string
  readonly cert: string
  readonly key: string
  /** The client id and the certificate URI SAN registered for it. */
  readonly clients: Readonly<Record<string, string>>
}

export class TokenEndpoint {
  readonly requests: TokenRequestSeen[] = []
  /** Tokens issued, newest last. */
  readonly issued: string[] = []
  /** Lifetime (`expires_in`, seconds) of the next tokens. */
  lifetime: number | string = 3600
  /** Answer each token request after this long. */
  delayMs = 0
  /** Answer with this error instead of a token (RFC 6749 §5.2). */
  failWith: { status: number; error: string; description?: string } | undefined
  /** Extra fields of the next token responses (e.g. token_type). */
  extra: Record<string, unknown> = {}
  #server: Server | undefined
  #port = 0
  readonly #opts: TokenEndpointOptions

  constructor(opts: TokenEndpointOptions) {
    this.#opts = opts
  }

  get url(): string {
    return `https://127.0.0.1:${this.#port}/oauth2/v2.0/token`
  }

  /** Starts listening (again on the same port after `stop`). */
  async start(): Promise<void> {
    const server = createServer(
      { ca: readFileSync(this.#opts.ca), cert: readFileSync(this.#opts.cert), key: readFileSync(this.#opts.key), requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        const chunks: Buffer[] = []
        req.on('data', (c: Buffer) => chunks.push(c))
        req.on('end', () => {
          const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString()))
          const peer = (req.socket as TLSSocket).getPeerCertificate()
          const clientUri = /URI:([^,\s]+)/.exec(peer.subjectaltname ?? '')?.[1]
          this.requests.push({ form, clientUri, clientSerial: peer.serialNumber, at: Date.now() })
          const answer = () => {
            const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body))
            if (req.method !== 'POST' || form.grant_type !== 'client_credentials') return json(400, { error: 'unsupported_grant_type' })
            const registered = form.client_id === undefined ? undefined : this.#opts.clients[form.client_id]
            if (registered === undefined || registered !== clientUri) return json(401, { error: 'invalid_client', error_description: `certificate ${clientUri} is not registered for ${form.client_id}` })
            if (this.failWith) return json(this.failWith.status, { error: this.failWith.error, ...(this.failWith.description ? { error_description: this.failWith.description } : {}) })
            const token = `at-${randomBytes(24).toString('base64url')}`
            this.issued.push(token)
            json(200, { access_token: token, token_type: 'Bearer', expires_in: this.lifetime, ...this.extra })
          }
          if (this.delayMs > 0) setTimeout(answer, this.delayMs)
          else answer()
        })
      },
    )
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#port, '127.0.0.1', () => resolve())
    })
    this.#port = (server.address() as AddressInfo).port
    this.#server = server
  }

  /** Stops listening and drops every connection: the endpoint is down. */
  async stop(): Promise<void> {
    const s = this.#server
    this.#server = undefined
    if (!s) return
    s.closeAllConnections()
    await new Promise<void>((resolve) => s.close(() => resolve()))
  }
}
