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
    '  catalog:', //                                12
    '    good: { kind: gemini, upstream: "https://g.example" }', // 13
    '    other: { upstream: "https://o.example" }', // 14
    'unknownTop: 1', //                             15
    '',
  ].join('\n')
  t.same(problems(() => parseConfig(yaml, FILE)).sort(), [
    `${FILE}:10:24: identity.users.clockToleranceSec: must be <= 300`,
    `${FILE}:13:19: providers.catalog.good.kind: must be one of ["openai","anthropic","azure-openai","mcp"]`,
    `${FILE}:14:12: providers.catalog.other.kind: is required`,
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
  t.same(problems(() => parseConfig('identity:\n  trustDomains: [a]\nproviders:\n  catalog:\n    "Bad Name": { kind: openai, upstream: "https://x.example" }\n', FILE)), [
    `${FILE}:5:5: providers.catalog.Bad Name: is not a valid name (must match pattern "^[a-z0-9][a-z0-9._-]{0,62}$")`,
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
  t.same(cfg.providers, {
    catalog: { openai: { kind: 'openai', upstream: 'https://api.openai.com', root: true }, anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com', root: true } },
    allowedToolTypes: [],
    credentialPollSeconds: 10,
  })
  t.match(cfg.policy, { dir: 'policies', shadowDir: '', watch: true, cacheSize: 100000 })
  t.match(cfg.redaction, { enabled: true })
  t.match(cfg.audit, { enabled: true })
})

t.test('given values are kept and defaults fill only the gaps', async (t) => {
  const cfg = configFromObject(
    {
      server: { listen: '127.0.0.1:0', maxBodyBytes: 2048 },
      identity: { trustDomains: ['a.example', 'b.example'], trustXfcc: true, users: { audience: 'gate' } },
      providers: { catalog: { 'internal-llm': { kind: 'openai', upstream: 'http://vllm.ml.svc:8000' } } },
    },
    'test',
  )
  t.equal(cfg.server.listen, '127.0.0.1:0')
  t.equal(cfg.server.maxBodyBytes, 2048)
  t.equal(cfg.server.phaseTimeoutMs, 800)
  t.equal(cfg.identity.trustXfcc, true)
  t.equal(cfg.identity.users.audience, 'gate')
  t.equal(cfg.identity.users.header, 'x-modelgate-user-token')
  t.same(cfg.providers.catalog, { 'internal-llm': { kind: 'openai', upstream: 'http://vllm.ml.svc:8000', root: true } }, 'a configured catalog replaces the default one')
})

t.test('the result is deeply frozen, and the input object is left untouched', async (t) => {
  const input = { identity: { trustDomains: ['example.org'] } }
  const cfg = configFromObject(input, 'test')
  t.same(input, { identity: { trustDomains: ['example.org'] } }, 'defaults are not written into the caller\'s object')
  t.ok(Object.isFrozen(cfg))
  t.ok(Object.isFrozen(cfg.server))
  t.ok(Object.isFrozen(cfg.identity.trustDomains))
  t.ok(Object.isFrozen(cfg.identity.users.algorithms))
  t.ok(Object.isFrozen(cfg.providers.catalog.openai))
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

t.test('the provider catalog: what the schema cannot check is reported together, each at its place', async (t) => {
  const yaml = [
    'identity: { trustDomains: [a] }', //                                              1
    'providers:', //                                                                   2
    '  catalog:', //                                                                   3
    '    openai:', //                                                                  4
    '      kind: openai', //                                                           5
    '      upstream: https://api.openai.com', //                                       6
    '      models: [gpt-4o-mini, "gpt-4.1*"]', //                                      7
    '      aliases: { fast: gpt-4o-mini, big: gpt-5 }', //                             8
    '      credentials:', //                                                           9
    '        - { name: default, file: /k, env: OPENAI_KEY }', //                       10
    '        - { name: default, header: host, env: K }', //                            11
    '        - { name: empty }', //                                                    12
    '    groq:', //                                                                    13
    '      kind: openai', //                                                           14
    '      upstream: https://api.groq.com/openai', //                                  15
    '    azure:', //                                                                   16
    '      kind: azure-openai', //                                                     17
    '      upstream: https://r.openai.azure.com', //                                   18
    '      basePaths: [/api]', //                                                      19
    '      aliases: { gpt: "team/gpt" }', //                                           20
    '',
  ].join('\n')
  t.same(problems(() => parseConfig(yaml, FILE)), [
    `${FILE}:8:42: providers.catalog.openai.aliases.big: leads to "gpt-5", which models does not list`,
    `${FILE}:10:11: providers.catalog.openai.credentials[0]: needs exactly one of file, env, oauth, none (has file, env)`,
    `${FILE}:11:19: providers.catalog.openai.credentials[1].name: "default" is used twice in this provider`,
    `${FILE}:11:36: providers.catalog.openai.credentials[1].header: may not set "host"`,
    `${FILE}:12:11: providers.catalog.openai.credentials[2]: needs exactly one of file, env, oauth, none (has none of them)`,
    `${FILE}:14:7: providers.catalog.groq: serves the OpenAI paths under /v1/, as provider "openai" does: give one of them root: false or other basePaths`,
    `${FILE}:14:7: providers.catalog.groq: serves the OpenAI paths under /openai/v1/, as provider "openai" does: give one of them root: false or other basePaths`,
    `${FILE}:14:7: providers.catalog.groq: serves the OpenAI paths under /api/v1/, as provider "openai" does: give one of them root: false or other basePaths`,
    `${FILE}:17:7: providers.catalog.azure: serves the OpenAI paths under /api/v1/, as provider "openai" does: give one of them root: false or other basePaths`,
    `${FILE}:20:23: providers.catalog.azure.aliases.gpt: leads to "team/gpt", which cannot be an Azure OpenAI deployment name (letters, digits, . _ -, at most 64)`,
  ])
})

t.test('the shape before the catalog (providers.routes) is refused with the shape that replaces it', async (t) => {
  const [p] = problems(() => parseConfig('identity: { trustDomains: [a] }\nproviders:\n  routes:\n    openai: { kind: openai }\n', FILE))
  t.match(p, new RegExp(`^${FILE}:4:5: providers\\.routes: is replaced by providers\\.catalog: each provider is an entry`))
  t.match(p, /providers\.catalog\.openai: \{kind: openai, upstream: "https:\/\/api\.openai\.com", credentials: \[/)
})

t.test('credentials: sources, selectors and token endpoints are typed', async (t) => {
  const cfg = configFromObject(
    {
      identity: { trustDomains: ['a'] },
      providers: {
        catalog: {
          azure: {
            kind: 'azure-openai',
            upstream: 'https://r.openai.azure.com',
            credentials: [
              { name: 'payments', when: { teams: ['payments'] }, file: '/etc/modelgate/credentials/azure/payments' },
              { name: 'entra', oauth: { tokenUrl: 'https://login.example/tenant/oauth2/v2.0/token', clientId: 'c1', scope: 'https://cognitiveservices.azure.com/.default', certFile: 'svid.pem', keyFile: 'svid.key' } },
            ],
          },
        },
      },
    },
    'test',
  )
  t.same(cfg.providers.catalog.azure!.credentials![1]!.oauth, {
    tokenUrl: 'https://login.example/tenant/oauth2/v2.0/token',
    clientId: 'c1',
    scope: 'https://cognitiveservices.azure.com/.default',
    certFile: 'svid.pem',
    keyFile: 'svid.key',
    refreshBeforeSeconds: 300,
    timeoutMs: 5000,
  })
  t.same(
    problems(() =>
      configFromObject({ identity: { trustDomains: ['a'] }, providers: { catalog: { x: { kind: 'openai', upstream: 'ftp://x', credentials: [{ name: 'a', when: {}, oauth: { tokenUrl: 'http://plain.example/token', clientId: 'c', certFile: 'c', keyFile: 'k' } }] } } } }, 'test'),
    ).sort(),
    [
      'test: providers.catalog.x.credentials[0].oauth.tokenUrl: must match pattern "^https://[^\\s/?#]+(/[^\\s#]*)?$"',
      'test: providers.catalog.x.credentials[0].when: must NOT have fewer than 1 properties',
      `test: providers.catalog.x.upstream: must match pattern "^https?://[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?(/[A-Za-z0-9._~-]{1,64}){0,4}$"`,
    ],
  )
})
