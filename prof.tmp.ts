import { compileRedaction, redactionConfigFrom } from './src/redaction/engine.ts'
import { PlaceholderBook } from './src/redaction/placeholders.ts'
import { SseRedactor } from './src/redaction/stream.ts'
import { mixedText } from './test/fixtures/redaction/corpus.ts'
const engine = compileRedaction(redactionConfigFrom({}))
const answer = mixedText(512 * 1024)
const evs: Buffer[] = []
for (let i = 0; i < answer.length; i += 20) evs.push(Buffer.from(`data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1700000000, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: answer.slice(i, i + 20) }, finish_reason: null }] })}\n\n`))
const r = new SseRedactor({ scanner: engine.scanner, subject: undefined, book: new PlaceholderBook(), restore: false, action: () => 'redact', onDetection: () => {} })
const t = performance.now()
for (let i = 0; i < evs.length; i++) r.push(evs[i]!, i === evs.length - 1)
console.log(performance.now() - t)
