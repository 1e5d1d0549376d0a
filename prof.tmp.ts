import { compileRedaction, redactionConfigFrom } from './src/redaction/engine.ts'
import { PlaceholderBook } from './src/redaction/placeholders.ts'
import { SseRedactor } from './src/redaction/stream.ts'
import { mixedText } from './test/fixtures/redaction/corpus.ts'
const engine = compileRedaction(redactionConfigFrom({}))
const answer = mixedText(1024 * 1024)
const evs: Buffer[] = []
for (let i = 0; i < answer.length; i += 20) evs.push(Buffer.from(`data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1700000000, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { content: answer.slice(i, i + 20) }, finish_reason: null }] })}\n\n`))
for (let run = 0; run < 2; run++) {
const r = new SseRedactor({ scanner: engine.scanner, subject: undefined, book: new PlaceholderBook(), restore: false, action: () => 'redact', onDetection: () => {} })
const times: [number, number][] = []
for (let i = 0; i < evs.length; i++) { const t = performance.now(); r.push(evs[i]!, i === evs.length - 1); times.push([performance.now() - t, i]) }
times.sort((a, b) => b[0] - a[0])
console.log(times.slice(0, 8).map(([t, i]) => `${t.toFixed(1)}@${i}`).join(' '))
}
