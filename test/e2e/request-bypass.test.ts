/**
 * Requests that try to slip data or decisions past modelgate, through a real
 * Envoy with the official SDKs where the request shape allows: data in keys,
 * numbers and fields that are not message text reaches the provider only as
 * placeholders; duplicate keys are refused; hostile bodies (deep nesting,
 * 200k tiny strings) are refused with their own codes while ordinary
 * requests keep flowing, and the process stays small.
 */
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { APIError } from 'openai'
import { checkHealth } from '../../src/cli/health.ts'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { imageLaunch } from '../helpers/image.ts'
import { stopProcess } from '../../src/dev/process.ts'
import { startStack, type Stack } from '../helpers/stack.ts'

const EMAIL = 'dana.whitfield@gmail.com'
const CARD = '4111111111111111'
const TOKEN = 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'
const MODEL = 'gpt-4o-mini'

t.test('request bodies are scanned whole and duplicate keys are refused', async (t) => {
  const stack: Stack = await startStack()
  t.teardown(() => stack.close())
  t.beforeEach(() => stack.provider.clear())

  /** What the provider received for the one request just made. */
  const received = (t: Test) => {
    t.equal(stack.provider.requests.length, 1, 'the provider got the request')
    const body = stack.provider.requests[0]!.body.toString('utf8')
    t.notOk(body.includes(EMAIL), 'the e-mail address never reached the provider')
    t.notOk(body.includes(CARD), 'the card number never reached the provider')
    return JSON.parse(body)
  }

  t.test('OpenAI SDK: data outside the message text reaches the provider only as placeholders', async (t) => {
    const openai = stack.openai('checkout')
    const user = { role: 'user' as const, content: 'hello' }

    await openai.chat.completions.create({ model: MODEL, messages: [user], metadata: { [EMAIL]: 'customer' } })
    t.same(Object.keys(received(t).metadata), ['[EMAIL_1]'], 'a key of metadata')
    stack.provider.clear()

    await openai.chat.completions.create({ model: MODEL, messages: [user], metadata: { customer: `mail ${EMAIL}` } })
    t.equal(received(t).metadata.customer, 'mail [EMAIL_1]', 'a value under metadata')
    stack.provider.clear()

    await openai.chat.completions.create({
      model: MODEL,
      messages: [
        user,
        { role: 'assistant', content: null, tool_calls: [{ id: EMAIL, type: 'function', function: { name: 'lookup_order', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: EMAIL, content: 'found' },
      ],
    })
    const calls = received(t).messages
    t.same([calls[1].tool_calls[0].id, calls[2].tool_call_id], ['[EMAIL_1]', '[EMAIL_1]'], 'tool call ids')
    stack.provider.clear()

    await openai.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:;base64, mail ${EMAIL}`, detail: EMAIL as 'auto' } }] }],
    })
    const part = received(t).messages[0].content[0].image_url
    t.same([part.url, part.detail], ['data:;base64, mail [EMAIL_1]', '[EMAIL_1]'], 'a data: URL that is no image, and image_url.detail')
    stack.provider.clear()

    await openai.chat.completions.create({
      model: MODEL,
      messages: [user],
      tools: [{ type: 'function', function: { name: 'lookup_order', parameters: { type: 'object', properties: { [EMAIL]: { type: 'string' } } } } }],
    })
    t.same(Object.keys(received(t).tools[0].function.parameters.properties), ['[EMAIL_1]'], 'a tool parameter name')
    stack.provider.clear()

    await openai.chat.completions.create({ model: MODEL, messages: [user], seed: Number(CARD) })
    t.equal(received(t).seed, '[CARD_NUMBER_1]', 'a card number given as a JSON number')
  })

  t.test('Anthropic SDK: tool_use input keys and long document text sources are scanned', async (t) => {
    const anthropic = stack.anthropic('checkout')
    await anthropic.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [
        { role: 'user', content: 'look it up' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'lookup_order', input: { customer: { [EMAIL]: true } } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: 'ok' }] },
      ],
    })
    t.same(Object.keys(received(t).messages[1].content[0].input.customer), ['[EMAIL_1]'])
    stack.provider.clear()

    const notes = `${'Quarterly reconciliation notes for the finance team. '.repeat(12)}Questions to ${EMAIL}.`
    t.ok(notes.length > 256)
    await anthropic.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 64,
      messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: notes } }, { type: 'text', text: 'Summarise.' }] }],
    })
    t.match(received(t).messages[0].content[0].source.data, /Questions to \[EMAIL_1\]\.$/)
  })

  t.test('a secret used as a key feeds policy like any other: refused, and nothing reaches the provider', async (t) => {
    const err = await stack
      .openai('checkout')
      .chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], metadata: { [TOKEN]: 'x' } })
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    t.ok(err instanceof APIError)
    t.equal((err as APIError).status, 403)
    t.match((err as APIError).error, { code: 'MG_POLICY_DENIED' })
    t.equal(stack.provider.requests.length, 0)
  })

  t.test('duplicate keys are refused before policy sees the request', async (t) => {
    const cases: [name: string, body: string, field: string][] = [
      ['a second model', `{"model":"${MODEL}","messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}`, 'model'],
      [
        'a second tools list',
        `{"model":"${MODEL}","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"lookup_order"}}],\n"tools":[{"type":"function","function":{"name":"web_search"}}]}`,
        'tools',
      ],
    ]
    for (const [name, body, field] of cases) {
      const res = await stack.request('checkout', { path: '/v1/chat/completions', body })
      t.equal(res.status, 400, name)
      t.equal(res.headers['x-modelgate-error'], 'MG_BODY_DUPLICATE_KEY', name)
      t.match(res.json().error, { code: 'MG_BODY_DUPLICATE_KEY', field }, name)
    }
    t.same(res2line(await stack.request('checkout', { path: '/v1/chat/completions', body: cases[1]![1] })), { line: 2, column: 1 })
    t.equal(stack.provider.requests.length, 0, 'nothing reached the provider')
  })
})

t.test('hostile bodies are refused with their codes while ordinary requests keep flowing, in a small process', async (t) => {
  // modelgate in its own process (as deployed), so that its memory is measured alone.
  const stack = await startStack({ withoutModelgate: true })
  t.teardown(() => stack.close())
  const configFile = join(stack.dir, 'modelgate.json')
  await writeFile(configFile, JSON.stringify(stack.configObject))
  // Launched as the container image launches it (its environment and node flags); the test runner's own hooks stay out.
  const image = imageLaunch()
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('TAP') && !k.startsWith('_TAPJS') && !k.startsWith('TS_NODE')))
  const child = spawn(process.execPath, [...image.nodeFlags, join(REPO_ROOT, 'bin/modelgate.js'), 'serve', '--config', configFile], {
    env: { ...env, ...image.env, MODELGATE_LOG_LEVEL: 'error' },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  t.teardown(() => stopProcess(child, 5000))
  const ready = Date.now() + 30_000
  while ((await checkHealth(`unix://${stack.socket}`, 500).catch(() => 'UNREACHABLE')) !== 'SERVING') {
    if (Date.now() > ready || child.exitCode !== null) throw new Error('modelgate did not start')
    await new Promise((r) => setTimeout(r, 100))
  }
  const rssOf = (field: 'VmRSS' | 'VmHWM') => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024
  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MB`
  let maxRss = rssOf('VmRSS')
  t.comment(`modelgate serving: ${mb(maxRss)} (start-up peak ${mb(rssOf('VmHWM'))})`)
  const sampler = setInterval(() => (maxRss = Math.max(maxRss, rssOf('VmRSS'))), 20)
  t.teardown(() => clearInterval(sampler))

  const deep = '['.repeat(60 * 1024)
  const tiny = `{"model":"${MODEL}","messages":[{"role":"user","content":"hi"}],"metadata":[${Array.from({ length: 200_000 }, () => '"ab"').join(',')}]}`
  t.ok(tiny.length > 1_000_000 && tiny.length <= 1 << 20, `the tiny-string body is ${tiny.length} bytes`)

  let hostileDone = false
  const hostile = (async () => {
    const results: string[] = []
    try {
      for (let i = 0; i < 6; i++) {
        for (const body of [deep, tiny]) {
          const res = await stack.request('checkout', { path: '/v1/chat/completions', body })
          results.push(`${res.status} ${res.headers['x-modelgate-error']}`)
        }
      }
    } finally {
      hostileDone = true
    }
    return results
  })()
  // Two callers, one streamed and one plain answer after the other, for as long as the hostile bodies keep coming.
  const openai = stack.openai('notebook')
  const answers: string[] = []
  const failures: unknown[] = []
  const flow = async (streamed: boolean) => {
    while (!hostileDone) {
      try {
        if (streamed) {
          const stream = await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'ordinary question' }], stream: true })
          let text = ''
          for await (const c of stream) text += c.choices[0]?.delta?.content ?? ''
          answers.push(text)
        } else {
          const r = await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'ordinary question' }] })
          answers.push(r.choices[0]!.message.content ?? '')
        }
      } catch (err) {
        failures.push(err)
      }
    }
  }
  const [results] = await Promise.all([hostile, flow(true), flow(false)])
  clearInterval(sampler)

  t.same(
    results,
    Array.from({ length: 6 }, () => ['400 MG_BODY_TOO_DEEP', '413 MG_BODY_TOO_COMPLEX']).flat(),
    'every hostile body is refused with its own code, within the deadline (never MG_TIMEOUT)',
  )
  t.same(failures, [], 'no ordinary request failed')
  t.ok(answers.length >= 4, `${answers.length} ordinary requests ran alongside`)
  t.ok(
    answers.every((a) => a.includes('You said: ordinary question')),
    'every ordinary request succeeded',
  )
  t.ok(maxRss < 300 * 1024 * 1024, `modelgate's process stayed under 300 MB (peak ${mb(maxRss)}, run as the image runs it: ${image.nodeFlags.join(' ')} ${Object.entries(image.env).map(([k, v]) => `${k}=${v}`).join(' ')})`)
  t.notOk(
    stack.provider.requests.some((r) => r.body.length > 100_000),
    'no hostile body reached the provider',
  )
})

/** The environment and node flags the container image runs modelgate with (scripts/container/Dockerfile). */
function res2line(res: { json(): any }): { line: unknown; column: unknown } {
  const e = res.json().error
  return { line: e.line, column: e.column }
}
