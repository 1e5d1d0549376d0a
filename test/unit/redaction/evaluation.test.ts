/**
 * The independent evaluation set (test/fixtures/redaction/eval/): realistic
 * documents with planted values of every class and look-alikes, generated
 * from the value formats rather than from the detector catalog. Per class,
 * secrets must all be found, personal and financial data at least 99%, and
 * at least 98% of what is reported must be a planted value.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { compileRedaction, redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { generate } from '../../fixtures/redaction/eval/generate.ts'
import { loadEvalSet, precision, recall, score } from '../../fixtures/redaction/eval/score.ts'

const engine = compileRedaction(redactionConfigFrom({}))
const docs = loadEvalSet()
const result = score(engine.scanner, docs)
const detail = () => result.mistakes.slice(0, 8).join('\n')

t.test('the stored evaluation set is what the generator writes from its fixed seed', async (t) => {
  const stored = readFileSync(new URL('../../fixtures/redaction/eval/eval-set.jsonl', import.meta.url), 'utf8')
  t.equal(stored, generate().map((d) => JSON.stringify(d)).join('\n') + '\n')
})

t.test('the set holds every class, in every kind of document, and look-alikes', async (t) => {
  for (const c of ['secret', 'pii', 'financial', 'health', 'internal']) {
    const s = result.perClass.get(c)
    t.ok(s && s.tp + s.fn >= 200, `${c}: ${s ? s.tp + s.fn : 0} labelled values`)
  }
  t.ok(new Set(docs.map((d) => d.kind)).size >= 10, 'ten kinds of documents')
  t.ok(docs.reduce((n, d) => n + d.decoys.length, 0) >= 5000, 'at least 5000 look-alikes')
})

t.test('every planted secret is found', async (t) => {
  const s = result.perClass.get('secret')!
  t.equal(recall(s), 1, `secret recall ${recall(s).toFixed(4)} (${s.fn} missed)\n${detail()}`)
})

t.test('personal and financial data: at least 99% of planted values found', async (t) => {
  for (const c of ['pii', 'financial']) {
    const s = result.perClass.get(c)!
    t.ok(recall(s) >= 0.99, `${c} recall ${recall(s).toFixed(4)} (${s.fn} missed)\n${detail()}`)
  }
})

t.test('every class: at least 98% of what is reported was planted', async (t) => {
  for (const [c, s] of result.perClass) t.ok(precision(s) >= 0.98, `${c} precision ${precision(s).toFixed(4)} (${s.fp} false)\n${detail()}`)
})
