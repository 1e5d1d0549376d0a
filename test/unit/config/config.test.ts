import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ConfigError, configFromObject, formatProblem, loadConfigFile, parseConfig, resolveConfigPath, type Config } from '../../../src/config/config.ts'

/** The problems of a configuration that must fail, as formatted lines. */
function problems(fn: () => unknown): string[] {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map(formatProblem)
    throw err
  }
  throw new Error('the configuration was accepted')
}

const FILE = '/etc/modelgate/config.yaml'

t.test('every problem of a file is reported together, each with file:line:col and the field', async (t) => {
  const yaml = [
    'server:', //                                   1
    '  listen: "nope"', //                          2
    '  maxBodyBytes: 10', //                        3
    '  extra: 1', //                                4
    'identity:', //                                 5
    '  trustDomains: ["Bad Domain", "ok.example"]', // 6
    '  trustXfcc: "yes"', //                        7
    '  users:', //                                  8
    '    algorithms: [HS256]', //                   9
    '    clockToleranceSec: 301', //                10
    'providers:', //                                11
    '  routes:', //                                 12
    '    good: { kind: gemini }', //                13
    '    other: {}', //                             14
    'unknownTop: 1', //                             15
    '',
  ].join('\n')
  t.same(problems(() => parseConfig(yaml, FILE)).sort(), [
    `${FILE}:10:24: identity.users.clockToleranceSec: must be <= 300`,
    `${FILE}:13:19: providers.routes.good.kind: must be one of ["openai","anthropic","azure-openai"]`,
    `${FILE}:14:12: providers.routes.other.kind: is required`,
    `${FILE}:15:1: unknownTop: is not a known setting`,
    `${FILE}:2:11: server.listen: must match pattern "^(unix://.+|[^\\s/]+:[0-9]{1,5})$"`,
    `${FILE}:3:17: server.maxBodyBytes: must be >= 1024`,
    `${FILE}:4:3: server.extra: is not a known setting`,
    `${FILE}:6:18: identity.trustDomains[0]: must match pattern "^[a-z0-9._-]{1,255}$"`,
    `${FILE}:7:14: identity.trustXfcc: must be boolean`,
    `${FILE}:9:18: identity.users.algorithms[0]: must be one of ["RS256","RS384","RS512","PS256","PS384","PS512","ES256","ES384","ES512","EdDSA"]`,
  ])
})

t.test('the ConfigError message lists every problem under a count', async (t) => {
  try {
    parseConfig('server:\n  drainTimeoutMs: -1\n  phaseTimeoutMs: 5\n', 'c.yaml')
    t.fail('accepted')
  } catch (err) {
    t.ok(err instanceof ConfigError)
    const e = err as ConfigError
    t.equal(e.name, 'ConfigError')
    t.equal(e.problems.length, 3)
    t.equal(
      e.message,
      [
        'invalid configuration (3 problems):',
        '  c.yaml:1:1: identity: is required',
        '  c.yaml:3:19: server.phaseTimeoutMs: must be >= 10',
        '  c.yaml:2:19: server.drainTimeoutMs: must be >= 0',
      ].join('\n'),
    )
  }
  t.equal(problems(() => parseConfig('server: {}\n', 'one.yaml')).length, 1)
  try {
    parseConfig('server: {}\n', 'one.yaml')
  } catch (err) {
    t.match((err as Error).message, /^invalid configuration \(1 problem\):\n/)
  }
})

t.test('a bad key name in a map of names is reported at that key', async (t) => {
  t.same(problems(() => parseConfig('identity:\n  trustDomains: [a]\nproviders:\n  routes:\n    "Bad Name": { kind: openai }\n', FILE)), [
    `${FILE}:5:5: providers.routes.Bad Name: is not a valid name (must match pattern "^[a-z0-9][a-z0-9._-]{0,62}$")`,
  ])
})

t.test('providers.allowedToolTypes lists tool type names, each once, and every bad one is reported', async (t) => {
  const ok = parseConfig('identity:\n  trustDomains: [a]\nproviders:\n  allowedToolTypes: [web_search_20991231, programmatic_tool_calling]\n', FILE)
  t.same(ok.providers.allowedToolTypes, ['web_search_20991231', 'programmatic_tool_calling'])
  t.same(problems(() => parseConfig('identity:\n  trustDomains: [a]\nproviders:\n  allowedToolTypes: ["web search", "", 7, x, x]\n', FILE)).sort(), [
    `${FILE}:4:21: providers.allowedToolTypes: must NOT have duplicate items (items ## 4 and 3 are identical)`,
    `${FILE}:4:22: providers.allowedToolTypes[0]: must match pattern "^[A-Za-z0-9_.-]{1,128}$"`,
    `${FILE}:4:36: providers.allowedToolTypes[1]: must match pattern "^[A-Za-z0-9_.-]{1,128}$"`,
    `${FILE}:4:40: providers.allowedToolTypes[2]: must be string`,
  ])
})

t.test('YAML syntax errors are reported with their line and column', async (t) => {
  const cases: [name: string, text: string, expected: RegExp][] = [
    ['a duplicate key', 'identity:\n  trustDomains: [a]\n  trustDomains: [b]\n', /^c\.yaml:3:3: \(top level\): Map keys must be unique/],
    ['an unterminated flow sequence', 'identity:\n  trustDomains: [a\n', /^c\.yaml:\d+:\d+: \(top level\): /],
    ['a tab used for indentation', 'identity:\n\ttrustDomains: [a]\n', /^c\.yaml:2:\d+: \(top level\): /],
  ]
  for (const [name, text, expected] of cases) {
    const p = problems(() => parseConfig(text, 'c.yaml'))
    t.ok(p.length >= 1, name)
    t.match(p[0], expected, name)
  }
})

t.test('documents that are not a mapping are refused', async (t) => {
  t.same(problems(() => parseConfig('', 'c.yaml')), ['c.yaml: identity: is required'])
  t.same(problems(() => parseConfig('- a\n- b\n', 'c.yaml')), ['c.yaml:1:1: (top level): must be object'])
  t.same(problems(() => parseConfig('42\n', 'c.yaml')), ['c.yaml:1:1: (top level): must be object'])
})

t.test('configFromObject reports problems without positions, naming the source', async (t) => {
  t.same(problems(() => configFromObject({ identity: { trustDomains: [] }, server: { phaseTimeoutMs: 1 } }, 'start')).sort(), [
    'start: identity.trustDomains: must NOT have fewer than 1 items',
    'start: server.phaseTimeoutMs: must be >= 10',
  ])
  t.same(problems(() => configFromObject({ identity: { trustDomains: ['a', 'a'] } }, 'start')), [
    'start: identity.trustDomains: must NOT have duplicate items (items ## 1 and 0 are identical)',
  ])
  t.same(problems(() => configFromObject({}, 'start')), ['start: identity: is required'])
  t.same(problems(() => configFromObject(null, 'start')), ['start: (top level): must be object'])
})

t.test('defaults fill every section that is left out', async (t) => {
  const cfg = configFromObject({ identity: { trustDomains: ['example.org'] } }, 'test')
  t.same(cfg.server, { listen: 'unix:///tmp/modelgate.sock', maxBodyBytes: 1048576, phaseTimeoutMs: 800, drainTimeoutMs: 10000, metricsListen: '', maxJsonDepth: 128, maxJsonValues: 100000, bodyWorkers: 0, bodyWorkerMinBytes: 65536 })
  t.same(cfg.identity, {
    trustDomains: ['example.org'],
    trustXfcc: false,
    stripHeaders: ['x-forwarded-client-cert', 'x-spiffe-id', 'x-client-spiffe-id', 'x-modelgate-identity', 'x-modelgate-principal', 'x-ssl-client-cert', 'x-client-cert'],
    users: {
      enabled: false,
      required: false,
      header: 'x-modelgate-user-token',
      jwksFile: '',
      issuer: '',
      audience: 'modelgate',
      algorithms: ['RS256', 'ES256', 'EdDSA'],
      groupsClaim: 'groups',
      clockToleranceSec: 30,
    },
  })
  t.same(cfg.providers, { routes: { openai: { kind: 'openai' }, anthropic: { kind: 'anthropic' } }, allowedToolTypes: [] })
  t.match(cfg.policy, { dir: 'policies', shadowDir: '', watch: true, cacheSize: 100000 })
  t.match(cfg.redaction, { enabled: true })
  t.match(cfg.audit, { enabled: true })
})

t.test('given values are kept and defaults fill only the gaps', async (t) => {
  const cfg = configFromObject(
    {
      server: { listen: '127.0.0.1:0', maxBodyBytes: 2048 },
      identity: { trustDomains: ['a.example', 'b.example'], trustXfcc: true, users: { audience: 'gate' } },
      providers: { routes: { 'internal-llm': { kind: 'openai' } } },
    },
    'test',
  )
  t.equal(cfg.server.listen, '127.0.0.1:0')
  t.equal(cfg.server.maxBodyBytes, 2048)
  t.equal(cfg.server.phaseTimeoutMs, 800)
  t.equal(cfg.identity.trustXfcc, true)
  t.equal(cfg.identity.users.audience, 'gate')
  t.equal(cfg.identity.users.header, 'x-modelgate-user-token')
  t.same(cfg.providers.routes, { 'internal-llm': { kind: 'openai' } }, 'configured routes replace the default routes')
})

t.test('the result is deeply frozen, and the input object is left untouched', async (t) => {
  const input = { identity: { trustDomains: ['example.org'] } }
  const cfg = configFromObject(input, 'test')
  t.same(input, { identity: { trustDomains: ['example.org'] } }, 'defaults are not written into the caller\'s object')
  t.ok(Object.isFrozen(cfg))
  t.ok(Object.isFrozen(cfg.server))
  t.ok(Object.isFrozen(cfg.identity.trustDomains))
  t.ok(Object.isFrozen(cfg.identity.users.algorithms))
  t.ok(Object.isFrozen(cfg.providers.routes.openai))
  t.throws(() => {
    ;(cfg.server as { maxBodyBytes: number }).maxBodyBytes = 1
  }, TypeError)
  t.throws(() => {
    ;(cfg.identity.trustDomains as string[]).push('evil.example')
  }, TypeError)
})

t.test('relative paths resolve against the configuration file\'s directory', async (t) => {
  const dir = t.testdir({ 'modelgate.yaml': 'identity:\n  trustDomains: [example.org]\npolicy:\n  dir: ./policies\n' })
  const cfg = loadConfigFile(join(dir, 'modelgate.yaml'))
  t.equal(cfg.baseDir, dir)
  t.equal(resolveConfigPath(cfg, cfg.policy.dir), join(dir, 'policies'))
  t.equal(resolveConfigPath(cfg, '/abs/jwks.json'), '/abs/jwks.json')
  const fromObject: Config = configFromObject({ identity: { trustDomains: ['a'] } }, 'start', '/srv/mg')
  t.equal(fromObject.baseDir, '/srv/mg')
  t.equal(resolveConfigPath(fromObject, 'keys/jwks.json'), '/srv/mg/keys/jwks.json')
  t.equal(configFromObject({ identity: { trustDomains: ['a'] } }, 'start').baseDir, process.cwd())
})

t.test('loadConfigFile reads YAML and JSON, and reports an unreadable file as a problem', async (t) => {
  const dir = t.testdir()
  const json = join(dir, 'config.json')
  writeFileSync(json, JSON.stringify({ identity: { trustDomains: ['example.org'] } }))
  t.same(loadConfigFile(json).identity.trustDomains, ['example.org'])
  const missing = join(dir, 'missing.yaml')
  const p = problems(() => loadConfigFile(missing))
  t.equal(p.length, 1)
  t.match(p[0], new RegExp(`^${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: \\(top level\\): cannot read file: ENOENT`))
  const bad = join(dir, 'bad.yaml')
  writeFileSync(bad, 'identity:\n  trustDomains: [example.org]\n  trustXfcc: maybe\n')
  t.same(problems(() => loadConfigFile(bad)), [`${bad}:3:14: identity.trustXfcc: must be boolean`])
})
