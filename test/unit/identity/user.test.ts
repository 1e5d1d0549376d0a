import t from 'tap'
import { MAX_USER_GROUPS, userFromClaims } from '../../../src/identity/user.ts'

const base = { sub: 'alice', iss: 'https://idp.example.org', exp: 1 }

t.test('claims used as text must be text: the user, or why the token is refused', async (t) => {
  t.same(userFromClaims({ ...base, email: 'alice@example.org', groups: ['ml'] }, 'groups'), { subject: 'alice', issuer: 'https://idp.example.org', email: 'alice@example.org', groups: ['ml'] })
  t.same(userFromClaims(base, 'groups'), { subject: 'alice', issuer: 'https://idp.example.org', email: undefined, groups: [] }, 'email and groups are optional')
  const refused: [name: string, claims: Record<string, unknown>, claim: string, reason: string][] = [
    ['sub as an object', { ...base, sub: { toString: 'alice' } }, 'groups', 'claim "sub" is not a non-empty string (object)'],
    ['sub as null', { ...base, sub: null }, 'groups', 'claim "sub" is not a non-empty string (null)'],
    ['sub as a boolean', { ...base, sub: true }, 'groups', 'claim "sub" is not a non-empty string (boolean)'],
    ['iss as an array', { ...base, iss: ['https://idp.example.org'] }, 'groups', 'claim "iss" is not a non-empty string (array)'],
    ['email as null', { ...base, email: null }, 'groups', 'claim "email" is not a string (null)'],
    ['email as a number', { ...base, email: 7 }, 'groups', 'claim "email" is not a string (number)'],
    ['groups as an object', { ...base, roles: { admin: true } }, 'roles', 'claim "roles" is not an array of strings (object)'],
    ['a nested array in groups', { ...base, groups: ['a', ['b']] }, 'groups', 'claim "groups" item 1 is not a string (array)'],
  ]
  for (const [name, claims, claim, reason] of refused) t.equal(userFromClaims(claims, claim), reason, name)
})

t.test('a groups claim named like an Object.prototype member is not found there', async (t) => {
  t.same(userFromClaims(base, 'constructor'), { subject: 'alice', issuer: 'https://idp.example.org', email: undefined, groups: [] })
  t.same(userFromClaims(base, 'toString'), { subject: 'alice', issuer: 'https://idp.example.org', email: undefined, groups: [] })
})

t.test(`at most ${MAX_USER_GROUPS} groups are kept`, async (t) => {
  const groups = Array.from({ length: 100 }, (_, i) => `g${i}`)
  const user = userFromClaims({ ...base, groups }, 'groups')
  t.equal(typeof user === 'string' ? user : user.groups.length, MAX_USER_GROUPS)
})
