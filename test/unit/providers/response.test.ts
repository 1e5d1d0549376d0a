import t from 'tap'
import { absorbResponseObject } from '../../../src/providers/apis/index.ts'
import { SseFactsReader, type ResponseFacts } from '../../../src/providers/response.ts'

const facts = (): ResponseFacts => ({ model: undefined, usage: { input: undefined, output: undefined } })

t.test('absorbResponseObject reads model and usage from every response shape', async (t) => {
  const cases: [name: string, obj: unknown, expected: ResponseFacts][] = [
    [
      'an OpenAI chat completion',
      { id: 'x', object: 'chat.completion', model: 'gpt-4o-mini-2024-07-18', usage: { prompt_tokens: 12, completion_tokens: 34, total_tokens: 46 } },
      { model: 'gpt-4o-mini-2024-07-18', usage: { input: 12, output: 34 } },
    ],
    [
      'an OpenAI embeddings response (no output tokens)',
      { object: 'list', model: 'text-embedding-3-small', usage: { prompt_tokens: 5, total_tokens: 5 } },
      { model: 'text-embedding-3-small', usage: { input: 5, output: undefined } },
    ],
    [
      'an Anthropic message',
      { type: 'message', model: 'claude-sonnet-4-5', usage: { input_tokens: 20, output_tokens: 7 } },
      { model: 'claude-sonnet-4-5', usage: { input: 20, output: 7 } },
    ],
    [
      'an OpenAI Responses object wrapped in an event',
      { type: 'response.completed', response: { model: 'gpt-4.1', usage: { input_tokens: 3, output_tokens: 4 } } },
      { model: 'gpt-4.1', usage: { input: 3, output: 4 } },
    ],
    [
      'an Anthropic message_start event',
      { type: 'message_start', message: { model: 'claude-haiku-4-5', usage: { input_tokens: 9, output_tokens: 1 } } },
      { model: 'claude-haiku-4-5', usage: { input: 9, output: 1 } },
    ],
    [
      'zero tokens',
      { model: 'm', usage: { prompt_tokens: 0, completion_tokens: 0 } },
      { model: 'm', usage: { input: 0, output: 0 } },
    ],
    [
      'invalid token counts are ignored',
      { usage: { prompt_tokens: -1, completion_tokens: 'many', input_tokens: Number.NaN, output_tokens: null } },
      { model: undefined, usage: { input: undefined, output: undefined } },
    ],
    ['a non-string model is ignored', { model: 42 }, { model: undefined, usage: { input: undefined, output: undefined } }],
    ['usage that is not an object is ignored', { usage: [1, 2] }, { model: undefined, usage: { input: undefined, output: undefined } }],
    ['null', null, { model: undefined, usage: { input: undefined, output: undefined } }],
    ['an array', [{ model: 'm' }], { model: undefined, usage: { input: undefined, output: undefined } }],
    ['a string', 'model', { model: undefined, usage: { input: undefined, output: undefined } }],
  ]
  for (const [name, obj, expected] of cases) {
    const f = facts()
    absorbResponseObject(f, obj)
    t.same(f, expected, name)
  }
})

t.test('later objects update earlier facts and keep what they do not mention', async (t) => {
  const f = facts()
  absorbResponseObject(f, { type: 'message_start', message: { model: 'claude', usage: { input_tokens: 10, output_tokens: 1 } } })
  absorbResponseObject(f, { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 42 } })
  t.same(f, { model: 'claude', usage: { input: 10, output: 42 } })
})

/** Feeds `chunks` to a fresh reader, the last one with end=true. */
function read(chunks: Buffer[]): SseFactsReader {
  const r = new SseFactsReader()
  chunks.forEach((c, i) => r.feed(c, i === chunks.length - 1))
  return r
}

const OPENAI_STREAM = [
  'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n',
  'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Grüße, 世界 🌍"}}]}\n\n',
  'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}}\n\n',
  'data: [DONE]\n\n',
].join('')

const ANTHROPIC_STREAM = [
  'event: message_start\ndata: {"type":"message_start","message":{"id":"m1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"usage":{"input_tokens":25,"output_tokens":1}}}\n\n',
  'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
  'event: ping\ndata: {"type": "ping"}\n\n',
  'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Héllo ✓"}}\n\n',
  'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
  'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}\n\n',
  'event: message_stop\ndata: {"type":"message_stop"}\n\n',
].join('')

const RESPONSES_STREAM = [
  'event: response.created\ndata: {"type":"response.created","response":{"id":"r1","model":"gpt-4.1","usage":null}}\n\n',
  'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}\n\n',
  'event: response.completed\ndata: {"type":"response.completed","response":{"id":"r1","model":"gpt-4.1","usage":{"input_tokens":8,"output_tokens":2,"total_tokens":10}}}\n\n',
].join('')

t.test('SseFactsReader reads whole streams of each provider format', async (t) => {
  const cases: [name: string, stream: string, expected: ResponseFacts, events: number][] = [
    ['OpenAI chat chunks with a usage chunk', OPENAI_STREAM, { model: 'gpt-4o-mini', usage: { input: 11, output: 5 } }, 4],
    ['Anthropic message events', ANTHROPIC_STREAM, { model: 'claude-sonnet-4-5', usage: { input: 25, output: 15 } }, 7],
    ['OpenAI Responses events', RESPONSES_STREAM, { model: 'gpt-4.1', usage: { input: 8, output: 2 } }, 3],
  ]
  for (const [name, stream, expected, events] of cases) {
    const r = read([Buffer.from(stream)])
    t.same(r.facts, expected, name)
    t.equal(r.events, events, `${name}: every event is seen`)
  }
})

t.test('SseFactsReader gives the same facts wherever the stream is split, mid-event or mid-UTF-8 character', async (t) => {
  for (const [name, stream] of [
    ['OpenAI', OPENAI_STREAM],
    ['Anthropic', ANTHROPIC_STREAM],
  ] as const) {
    const bytes = Buffer.from(stream)
    const whole = read([bytes]).facts
    let splits = 0
    for (let i = 1; i < bytes.length; i++) {
      const r = read([bytes.subarray(0, i), bytes.subarray(i)])
      if (JSON.stringify(r.facts) !== JSON.stringify(whole)) {
        t.fail(`${name}: split at byte ${i} changes the facts`)
        break
      }
      splits++
    }
    t.equal(splits, bytes.length - 1, `${name}: every two-way split agrees`)
    const byteByByte = read([...bytes].map((b) => Buffer.from([b])))
    t.same(byteByByte.facts, whole, `${name}: one byte per chunk agrees`)
  }
})

t.test('SseFactsReader copes with CRLF line endings and comments', async (t) => {
  const stream = ': keep-alive comment\r\n\r\n' + 'data: {"model":"m1","usage":{"prompt_tokens":1}}\r\n\r\n' + 'data: {"usage":{"completion_tokens":2}}\r\n\r\n'
  const r = read([Buffer.from(stream)])
  t.same(r.facts, { model: 'm1', usage: { input: 1, output: 2 } })
})

t.test('an event the stream ends without terminating is read, as the SDKs read it', async (t) => {
  const r = read([Buffer.from('data: {"model":"m1"}\n\ndata: {"usage":{"completion_tokens":2}}')])
  t.same(r.facts, { model: 'm1', usage: { input: undefined, output: 2 } })
  t.equal(r.events, 2)
})

t.test('an unterminated event is not read before the stream ends', async (t) => {
  const r = new SseFactsReader()
  r.feed(Buffer.from('data: {"model":"m","usage":{"prompt_tokens":3}}\n'), false)
  t.equal(r.facts.model, undefined)
  r.feed(Buffer.from('\n'), false)
  t.equal(r.facts.model, 'm')
})

t.test('SseFactsReader ignores what it cannot read', async (t) => {
  const stream = [
    'data: not json\n\n',
    'data: {"model": "m", \n\n',
    'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n',
    `data: {"model":"huge","pad":"${'x'.repeat(300 * 1024)}"}\n\n`,
    'data: \n\n',
  ].join('')
  const r = read([Buffer.from(stream)])
  t.same(r.facts, { model: undefined, usage: { input: undefined, output: undefined } })
  t.equal(r.events, 5)
})

t.test('invalid UTF-8 in a stream does not throw', async (t) => {
  const r = read([Buffer.from([0x64, 0x61, 0x74, 0x61, 0x3a, 0x20, 0xff, 0xfe, 0x0a, 0x0a]), Buffer.from('data: {"model":"ok"}\n\n')])
  t.equal(r.facts.model, 'ok')
})
