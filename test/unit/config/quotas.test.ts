import t from 'tap'
import { ConfigError, configFromObject, formatProblem, parseConfig } from '../../../src/config/config.ts'

const FILE = '/etc/modelgate/modelgate.yaml'

function problems(fn: () => unknown): string[] {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map(formatProblem)
    throw err
  }
  throw new Error('the configuration was accepted')
}

t.test('quotas default to none, on the memory store, refusing when a store cannot be reached', async (t) => {
  const c = configFromObject({ identity: { trustDomains: ['a.example'] } }, 'x')
  t.equal(c.quotas.store, 'memory')
  t.equal(c.quotas.onStoreError, 'deny')
  t.same(c.quotas.rules, [])
  t.equal(c.quotas.maxRequestSeconds, 600)
  t.equal(c.quotas.estimation.defaultMaxTokens, 4096)
  t.equal(c.quotas.redis.timeoutMs, 200)
})

t.test('a rule with a selector, a partition and a limit per window is accepted', async (t) => {
  const c = parseConfig(
    [
      'identity: { trustDomains: [modelgate.local] }',
      'quotas:',
      '  rules:',
      '    - name: notebook-rpm',
      '      match: { identity: ["spiffe://modelgate.local/ns/research/sa/notebook"] }',
      '      limit: { requests: 3 }',
      '      window: minute',
      '    - name: research-tokens',
      '      match: { team: [research], model: ["gpt-4o*"], operation: [chat] }',
      '      per: [identity, user]',
      '      limit: { inputTokens: 100000, outputTokens: 20000 }',
      '      window: month',
      '    - name: in-flight',
      '      per: [identity]',
      '      limit: { concurrent: 4 }',
      '',
    ].join('\n'),
    FILE,
  )
  t.same(
    c.quotas.rules.map((r) => r.name),
    ['notebook-rpm', 'research-tokens', 'in-flight'],
  )
})

t.test('every schema problem of the quota rules is reported together, with line, column and field', async (t) => {
  const yaml = [
    'identity: { trustDomains: [modelgate.local] }', // 1
    'quotas:', //                                        2
    '  store: postgres', //                              3
    '  rules:', //                                       4
    '    - name: "bad name!"', //                        5
    '      limit: { requests: 0 }', //                   6
    '      window: week', //                             7
    '    - name: ok', //                                 8
    '      per: [colour]', //                            9
    '      limit: { bananas: 3 }', //                    10
    '      window: day', //                              11
    '',
  ].join('\n')
  t.same(problems(() => parseConfig(yaml, FILE)).sort(), [
    `${FILE}:10:16: quotas.rules[1].limit.bananas: is not a known setting`,
    `${FILE}:3:10: quotas.store: must be one of ["memory","redis"]`,
    `${FILE}:5:13: quotas.rules[0].name: must match pattern "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"`,
    `${FILE}:6:26: quotas.rules[0].limit.requests: must be >= 1`,
    `${FILE}:7:15: quotas.rules[0].window: must be one of ["second","minute","hour","day","month"]`,
    `${FILE}:9:13: quotas.rules[1].per[0]: must be one of ["identity","team","namespace","user","provider","model","operation"]`,
  ])
})

t.test('what the schema cannot say is reported together too: duplicate names, mixed limits, windows, operations, Redis', async (t) => {
  const yaml = [
    'identity: { trustDomains: [modelgate.local] }', // 1
    'quotas:', //                                        2
    '  store: redis', //                                 3
    '  redis: { tls: { certFile: c.pem } }', //          4
    '  rules:', //                                       5
    '    - name: a', //                                  6
    '      limit: { requests: 3, tokens: 10 }', //       7
    '      window: minute', //                           8
    '    - name: a', //                                  9
    '      limit: { concurrent: 2 }', //                 10
    '      window: hour', //                             11
    '    - name: c', //                                  12
    '      match: { operation: [chatting] }', //         13
    '      limit: { tokens: 10 }', //                    14
    '',
  ].join('\n')
  t.same(problems(() => parseConfig(yaml, FILE)).sort(), [
    `${FILE}:11:15: quotas.rules[1].window: does not apply to a concurrent limit (requests in flight have no window)`,
    `${FILE}:12:7: quotas.rules[2].window: is required: one of second, minute, hour, day, month`,
    `${FILE}:13:27: quotas.rules[2].match.operation: "chatting" is not an operation (chat, completion, responses, embedding, messages)`,
    `${FILE}:4:10: quotas.redis.url: is required with store: redis`,
    `${FILE}:4:17: quotas.redis.tls: certFile and keyFile go together`,
    `${FILE}:7:14: quotas.rules[0].limit: sets requests and tokens: one kind of limit per rule (write another rule for the other)`,
    `${FILE}:9:13: quotas.rules[1].name: "a" is the name of an earlier rule`,
  ])
})
