/**
 * The catalog against the generated, labelled corpus: recall ≥ 0.99 for every
 * high-confidence secret detector, overall precision ≥ 0.98, and every
 * detector of the catalog exercised.
 */
import t from 'tap'
import { BUILTIN_DETECTORS } from '../../../src/redaction/catalog.ts'
import { compileRedaction, redactionConfigFrom } from '../../../src/redaction/engine.ts'
import { buildCorpus, CASES } from '../../fixtures/redaction/corpus.ts'
import { evaluate, precision, recall } from '../../fixtures/redaction/evaluate.ts'

const engine = compileRedaction(redactionConfigFrom({}))
const corpus = buildCorpus({ perCase: 100, negatives: 1500 })
const result = evaluate(engine.scanner, corpus)

t.test('the catalog has at least 40 detectors and the corpus covers each of them', async (t) => {
  t.ok(BUILTIN_DETECTORS.length >= 40, `${BUILTIN_DETECTORS.length} detectors`)
  t.same(new Set(CASES.map((c) => c.detector)), new Set(BUILTIN_DETECTORS.map((d) => d.id)))
})

t.test('high-confidence secret detectors find at least 99% of their labelled values', async (t) => {
  for (const d of BUILTIN_DETECTORS.filter((x) => x.dataClass === 'secret' && x.confidence === 'high')) {
    const s = result.perDetector.get(d.id) ?? { tp: 0, fp: 0, fn: 0 }
    t.ok(s.tp + s.fn >= 100, `${d.id} has at least 100 labelled values`)
    t.ok(recall(s) >= 0.99, `${d.id} recall ${recall(s).toFixed(3)}`)
  }
})

t.test('overall precision is at least 0.98, near-misses included', async (t) => {
  t.ok(precision(result.total) >= 0.98, `precision ${precision(result.total).toFixed(4)}; mistakes: ${result.mistakes.slice(0, 5).join(' | ')}`)
  t.ok(corpus.filter((s) => s.kind === 'negative').length >= 1500, 'at least 1500 near-miss samples')
})

t.test('every detector reaches recall 0.95 on its own cases', async (t) => {
  for (const [id, s] of result.perDetector) if (s.tp + s.fn > 0) t.ok(recall(s) >= 0.95, `${id} recall ${recall(s).toFixed(3)}`)
})
