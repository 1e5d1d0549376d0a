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
        const groups = payload[cfg.groupsClaim]
        return {
          subject: String(payload.sub),
          issuer: String(payload.iss),
          email: typeof payload.email === 'string' ? payload.email : undefined,
          groups: Array.isArray(groups) ? groups.filter((g): g is string => typeof g === 'string').slice(0, 64) : [],
        }
      } catch (err) {
        const why = err instanceof joseErrors.JOSEError ? err.code : 'ERR_INVALID_TOKEN'
        throw new GateError('MG_USER_TOKEN_INVALID', { internal: `user token rejected: ${why}` })
      }
    },
  }
}
