/** The modelgate entry point and the serve, health and dev-provider commands, as an operator uses them. */
import t from 'tap'
import { PassThrough } from 'node:stream'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { main } from '../../../src/cli/main.ts'
import { startApp } from '../../../src/app.ts'
import { configFromObject } from '../../../src/config/config.ts'
import { silentLogger } from '../../../src/log.ts'
import { permitAllPolicyDir } from '../../helpers/policies.ts'

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.on('data', (b: Buffer) => (out += b))
  stderr.on('data', (b: Buffer) => (err += b))
  const code = await main(argv, { stdout, stderr, stdin: new PassThrough(), cwd: process.cwd(), env })
  return { code, out, err }
}

t.test('without a command modelgate prints its usage and exits 2', async (t) => {
  const r = await cli([])
  t.equal(r.code, 2)
  t.match(r.err, /usage: modelgate <command>/)
  t.match(r.err, /serve .*start .*policy .*redact .*audit .*health/s)
})

t.test('--help prints the usage on stdout and exits 0', async (t) => {
  const r = await cli(['--help'])
  t.equal(r.code, 0)
  t.match(r.out, /usage: modelgate <command>/)
})

t.test('an unknown command is a usage error that names it', async (t) => {
  const r = await cli(['serv'])
  t.equal(r.code, 2)
  t.match(r.err, /unknown command "serv"/)
})

t.test('serve --check accepts a valid configuration', async (t) => {
  const dir = t.testdir({ 'modelgate.yaml': 'identity:\n  trustDomains: [prod.example.com]\n' })
  const r = await cli(['serve', '--check', '--config', join(dir, 'modelgate.yaml')])
  t.equal(r.code, 0)
  t.match(r.out, /configuration is valid/)
})

t.test('serve --check lists every configuration problem with file, line and field, and exits 1', async (t) => {
  const dir = t.testdir({ 'modelgate.yaml': 'server:\n  listen: nowhere\n  port: 3\nidentity:\n  trustDomains: [Bad.Domain]\n' })
  const file = join(dir, 'modelgate.yaml')
  const r = await cli(['serve', '--check', '--config', file])
  t.equal(r.code, 1)
  t.match(r.err, 'invalid configuration (3 problems)')
  t.match(r.err, `${file}:2:11: server.listen:`)
  t.match(r.err, `${file}:3:3: server.port: is not a known setting`)
  t.match(r.err, `${file}:5:18: identity.trustDomains[0]:`)
})

t.test('serve reads the configuration named by MODELGATE_CONFIG', async (t) => {
  const dir = t.testdir({ 'x.yaml': 'identity: {}\n' })
  const r = await cli(['serve', '--check'], { MODELGATE_CONFIG: join(dir, 'x.yaml') })
  t.equal(r.code, 1)
  t.match(r.err, 'identity.trustDomains: is required')
})

t.test('serve rejects an unknown flag as a usage error with its help', async (t) => {
  const r = await cli(['serve', '--listen', 'x'])
  t.equal(r.code, 2)
  t.match(r.err, /modelgate serve: .*--listen/)
  t.match(r.err, /usage: modelgate serve/)
})

t.test('health reports SERVING for a running modelgate and fails for an address nobody serves', async (t) => {
  // t.testdir paths are too long for a Unix socket.
  const dir = mkdtempSync(join(tmpdir(), 'mg-health-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const listen = `unix://${join(dir, 'mg.sock')}`
  const app = await startApp({
    config: configFromObject({ server: { listen }, identity: { trustDomains: ['prod.example.com'] }, policy: { dir: permitAllPolicyDir(), watch: false } }, 'test'),
    logger: silentLogger,
  })
  t.teardown(() => app.shutdown())
  const ok = await cli(['health', '--address', listen])
  t.equal(ok.code, 0)
  t.equal(ok.out, 'SERVING\n')
  const down = await cli(['health', '--address', `unix://${join(dir, 'nobody.sock')}`, '--timeout', '500'])
  t.equal(down.code, 1)
  t.match(down.err, /modelgate health: unix:\/\/.*nobody\.sock: /)
})

t.test('health refuses a timeout that is not a positive integer', async (t) => {
  const r = await cli(['health', '--address', 'unix:///tmp/x.sock', '--timeout', 'soon'])
  t.equal(r.code, 2)
})

t.test('dev-provider only listens on loopback', async (t) => {
  const r = await cli(['dev-provider', '--host', '0.0.0.0'])
  t.equal(r.code, 2)
  t.match(r.err, /only listens on loopback/)
})
