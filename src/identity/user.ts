/**
 * Delegated users: a workload may act for a human, proven by a JWT signed by a
 * trusted issuer. Verified with `jose` against a local JWKS; keys are loaded once.
 */
import { readFileSync } from 'node:fs'
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose'
import { GateError } from '../errors.ts'
import type { IdentityConfig } from '../config/sections/identity.ts'
import type { DelegatedUser } from './types.ts'

export interface UserVerifier {
  readonly header: string
  readonly required: boolean
  verify(token: string): Promise<DelegatedUser>
}

export function createUserVerifier(cfg: IdentityConfig['users'], resolvePath: (p: string) => string): UserVerifier {
  if (!cfg.jwksFile) throw new Error('identity.users.jwksFile is required when identity.users.enabled is true')
  if (!cfg.issuer) throw new Error('identity.users.issuer is required when identity.users.enabled is true')
  const file = resolvePath(cfg.jwksFile)
  let keys: JWTVerifyGetKey
  try {
    keys = createLocalJWKSet(JSON.parse(readFileSync(file, 'utf8')))
  } catch (err) {
    throw new Error(`identity.users.jwksFile ${file}: ${(err as Error).message}`)
  }
  return {
    header: cfg.header,
    required: cfg.required,
    async verify(raw: string): Promise<DelegatedUser> {
      const token = raw.replace(/^Bearer\s+/i, '').trim()
      try {
        const { payload } = await jwtVerify(token, keys, {
          issuer: cfg.issuer,
          audience: cfg.audience,
          algorithms: cfg.algorithms,
          clockTolerance: cfg.clockToleranceSec,
          requiredClaims: ['sub', 'exp'],
        })
        const user = userFromClaims(payload, cfg.groupsClaim)
        if (typeof user === 'string') throw new GateError('MG_USER_TOKEN_INVALID', { internal: `user token rejected: ${user}` })
        return user
      } catch (err) {
        if (err instanceof GateError) throw err
        const why = err instanceof joseErrors.JOSEError ? err.code : 'ERR_INVALID_TOKEN'
        throw new GateError('MG_USER_TOKEN_INVALID', { internal: `user token rejected: ${why}` })
      }
    },
  }
}

/** At most this many groups are kept per user. */
export const MAX_USER_GROUPS = 64

/**
 * The delegated user from a verified token's claims, or why the token is
 * refused. Every claim modelgate uses as text must be text: `sub` and `iss` a
 * non-empty string, `email` a string when present, the groups claim an array
 * of strings when present. A token that says otherwise is refused, never
 * coerced: `String({})` would make every such caller the user "[object
 * Object]", and a group modelgate skipped could be the one a `forbid` names.
 */
export function userFromClaims(payload: Readonly<Record<string, unknown>>, groupsClaim: string): DelegatedUser | string {
  const kind = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v)
  const { sub, iss, email } = payload
  if (typeof sub !== 'string' || sub === '') return `claim "sub" is not a non-empty string (${kind(sub)})`
  if (typeof iss !== 'string' || iss === '') return `claim "iss" is not a non-empty string (${kind(iss)})`
  if (email !== undefined && typeof email !== 'string') return `claim "email" is not a string (${kind(email)})`
  // Own claims only: a claim named like an Object.prototype member must not find it.
  const groups = Object.hasOwn(payload, groupsClaim) ? payload[groupsClaim] : undefined
  if (groups !== undefined && !Array.isArray(groups)) return `claim "${groupsClaim.slice(0, 64)}" is not an array of strings (${kind(groups)})`
  const list = (groups ?? []) as unknown[]
  const bad = list.findIndex((g) => typeof g !== 'string')
  if (bad !== -1) return `claim "${groupsClaim.slice(0, 64)}" item ${bad} is not a string (${kind(list[bad])})`
  // RFC 8693 token exchange: `act` names the party acting for the subject (an agent); its own `act` the one before it.
  const act = Object.hasOwn(payload, 'act') ? payload.act : undefined
  let actor: string | undefined
  if (act !== undefined) {
    if (typeof act !== 'object' || act === null || Array.isArray(act)) return `claim "act" is not an object (${kind(act)})`
    const actSub = (act as Record<string, unknown>).sub
    if (typeof actSub !== 'string' || actSub === '' || actSub.length > 256) return `claim "act.sub" is not a non-empty string of at most 256 characters (${kind(actSub)})`
    actor = actSub
  }
  const user: DelegatedUser = { subject: sub, issuer: iss, email, groups: (list as string[]).slice(0, MAX_USER_GROUPS) }
  return actor === undefined ? user : { ...user, actor }
}
