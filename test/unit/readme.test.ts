/** The README's error table is the user's catalog: it must list every code with its real status. */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { anthropicErrorType, ERRORS } from '../../src/errors.ts'

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')

t.test('every error code is documented in the README with its HTTP status', async (t) => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    const row = new RegExp(`^\\| \`${code}\` \\| ${spec.status} \\|`, 'm')
    t.match(readme, row, `${code} → ${spec.status}`)
  }
})

t.test('the README documents no error code that does not exist', async (t) => {
  const documented = [...readme.matchAll(/^\| `(MG_[A-Z_]+)` \| \d{3} \|/gm)].map((m) => m[1])
  t.same(documented.filter((c) => !(c! in ERRORS)), [])
})

t.test('the README\'s table of Anthropic error types is the one modelgate answers with', async (t) => {
  const rows = [...readme.matchAll(/^\| ((?:\d{3}(?:, )?)+) \| `([a-z_]+)` \|$/gm)]
  t.ok(rows.length >= 9, 'the table is there')
  const statuses = new Set(Object.values(ERRORS).map((e) => e.status))
  const documented = new Set<number>()
  for (const [, list, type] of rows) {
    for (const status of list!.split(', ').map(Number)) {
      documented.add(status)
      t.equal(anthropicErrorType(status), type, `${status} → ${type}`)
    }
  }
  for (const status of statuses) t.ok(documented.has(status), `status ${status} is in the table`)
})
