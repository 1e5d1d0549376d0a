import t from 'tap'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FileCredential } from '../../../src/credentials/file.ts'
import { GateError } from '../../../src/errors.ts'
import { createLogger, silentLogger } from '../../../src/log.ts'
import { SecretVolume } from '../../helpers/secret-volume.ts'

/** Waits until `check` holds (every 10 ms, at most `ms`). */
async function until(check: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (check()) return true
    await new Promise((r) => setTimeout(r, 10))
  }
  return check()
}

function open(path: string, pollMs = 60_000, logger = silentLogger): FileCredential {
  const c = new FileCredential({ path, label: 'openai/default', logger, pollMs })
  c.start()
  return c
}

t.test('the value is the file’s content without surrounding whitespace', async (t) => {
  const dir = t.testdir({ key: 'sk-test-one\n' })
  const c = open(join(dir, 'key'))
  t.teardown(() => c.close())
  t.equal(c.get(), 'sk-test-one')
  t.equal(c.version, 1)
})

t.test('a file that is missing, empty or holds what a header cannot carry fails at start-up, naming the path and never the content', async (t) => {
  const dir = t.testdir({ empty: '\n', spaced: 'two words', control: 'a\u0000b' })
  t.throws(() => open(join(dir, 'missing')), { message: `cannot read ${join(dir, 'missing')}: ENOENT` })
  t.throws(() => open(join(dir, 'empty')), { message: `${join(dir, 'empty')} holds no usable credential (empty, or characters a header cannot carry)` })
  for (const f of ['spaced', 'control']) {
    const err = t.throws(() => open(join(dir, f))) as Error
    t.notMatch(err.message, /two words|a\u0000b/)
  }
})

t.test('a rewritten file is read again on its change event', async (t) => {
  const dir = t.testdir({ key: 'sk-test-one' })
  const c = open(join(dir, 'key'))
  t.teardown(() => c.close())
  writeFileSync(join(dir, 'key'), 'sk-test-two\n')
  t.ok(await until(() => c.get() === 'sk-test-two'), 'the new value is used')
  t.equal(c.version, 2)
})

t.test('the kubelet’s ..data symlink swap is seen, and every read in between gets a whole value', async (t) => {
  const volume = new SecretVolume(join(t.testdir(), 'openai'), { 'api-key': 'sk-old-value' })
  const lines: string[] = []
  const c = open(volume.path('api-key'), 60_000, createLogger({ level: 'debug', write: (l) => lines.push(l) }))
  t.teardown(() => c.close())
  t.equal(c.get(), 'sk-old-value')
  const seen = new Set<string>()
  const reader = setInterval(() => seen.add(c.get()), 1)
  volume.update({ 'api-key': 'sk-new-value' })
  t.ok(await until(() => c.get() === 'sk-new-value'), 'the new version is used')
  clearInterval(reader)
  t.same([...seen].filter((v) => v !== 'sk-old-value' && v !== 'sk-new-value'), [], 'no request saw anything but the old or the new key')
  t.ok(lines.some((l) => JSON.parse(l).msg === 'credential file changed; new requests use the new value'))
  t.notMatch(lines.join('\n'), /sk-old-value|sk-new-value/, 'the log names the file, never the value')
})

t.test('without change events the periodic read finds the new value', async (t) => {
  const volume = new SecretVolume(join(t.testdir(), 'anthropic'), { 'api-key': 'sk-ant-old' })
  // No start(): no watch; only the periodic read would run, so drive it as its timer does.
  const c = new FileCredential({ path: volume.path('api-key'), label: 'anthropic/default', logger: silentLogger, pollMs: 60_000 })
  t.teardown(() => c.close())
  volume.update({ 'api-key': 'sk-ant-new' })
  t.equal(c.get(), 'sk-ant-old', 'nothing read yet')
  await c.refresh()
  t.equal(c.get(), 'sk-ant-new')
  const polled = open(volume.path('api-key'), 50)
  t.teardown(() => polled.close())
  volume.update({ 'api-key': 'sk-ant-newer' })
  t.ok(await until(() => polled.get() === 'sk-ant-newer'), 'the poll timer reads it')
})

t.test('a file that stays empty or gone takes the credential away; it comes back with the file', async (t) => {
  const dir = t.testdir({ key: 'sk-test-one' })
  const lines: string[] = []
  const c = open(join(dir, 'key'), 60_000, createLogger({ level: 'debug', write: (l) => lines.push(l) }))
  t.teardown(() => c.close())
  writeFileSync(join(dir, 'key'), '')
  // The old value is kept while the file is looked at again (a writer that truncates before it writes).
  await new Promise((r) => setTimeout(r, 60))
  t.equal(c.get(), 'sk-test-one', 'kept during the second looks')
  t.ok(
    await until(() => {
      try {
        c.get()
        return false
      } catch {
        return true
      }
    }),
    'then unavailable',
  )
  const err = t.throws(() => c.get()) as GateError
  t.equal(err.code, 'MG_CREDENTIAL_UNAVAILABLE')
  t.match(err.internal, /^credential openai\/default: the file holds no usable credential$/)
  rmSync(join(dir, 'key'))
  writeFileSync(join(dir, 'key'), 'sk-test-three')
  t.ok(await until(() => (() => { try { return c.get() === 'sk-test-three' } catch { return false } })()), 'usable again')
  t.notMatch(lines.join('\n'), /sk-test/)
})

t.test('a truncate-then-write update never takes the credential away', async (t) => {
  const dir = t.testdir({ key: 'sk-test-one' })
  const c = open(join(dir, 'key'))
  t.teardown(() => c.close())
  let failures = 0
  const reader = setInterval(() => {
    try {
      c.get()
    } catch {
      failures++
    }
  }, 1)
  writeFileSync(join(dir, 'key'), '')
  await new Promise((r) => setTimeout(r, 40))
  writeFileSync(join(dir, 'key'), 'sk-test-two')
  t.ok(await until(() => c.get() === 'sk-test-two'))
  clearInterval(reader)
  t.equal(failures, 0)
})
