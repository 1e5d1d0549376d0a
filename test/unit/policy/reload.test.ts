import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { Logger } from '../../../src/log.ts'
import { PolicyEngine, type ReloadStatus } from '../../../src/policy/engine.ts'
import { factsFromDescription } from '../../../src/policy/request.ts'
import { watchDirectories } from '../../../src/policy/watch.ts'
import { ALLOW_ALL, CHECKOUT, PERMIT_MINI, SCHEMA_TEXT, writePolicyDir } from './fixtures.ts'

const mini = factsFromDescription({ principal: CHECKOUT, model: 'gpt-4o-mini' }).facts
const other = factsFromDescription({ principal: CHECKOUT, model: 'gpt-4.1-mini' }).facts

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) => lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`)
  const logger: Logger & { lines: string[] } = { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error'), child: () => logger }
  return logger
}

/** Resolves with the first reload status that satisfies `pred` (bounded by a timeout). */
function nextReload(engine: PolicyEngine, pred: (s: ReloadStatus) => boolean, timeoutMs = 5000): Promise<ReloadStatus> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error(`no matching reload within ${timeoutMs} ms`))
    }, timeoutMs)
    const off = engine.onReload((s) => {
      if (!pred(s)) return
      clearTimeout(timer)
      off()
      resolve(s)
    })
  })
}

t.test('a policy change on disk takes effect on reload, and the cache starts over', async (t) => {
  const dir = writePolicyDir(t.testdir(), { 'a.cedar': PERMIT_MINI })
  const engine = new PolicyEngine({ dir })
  const before = engine.policySetHash
  t.equal(engine.decide(other).decision.effect, 'deny')
  t.equal(engine.decide(other).decision.cached, true)
  writeFileSync(join(dir, 'a.cedar'), ALLOW_ALL)
  const status = await engine.reload()
  t.match(status, { ok: true, changed: true, problems: [] })
  t.not(engine.policySetHash, before)
  t.equal(status.hash, engine.policySetHash)
  const after = engine.decide(other)
  t.equal(after.decision.effect, 'allow')
  t.equal(after.decision.cached, false, 'no answer survives a reload')
  t.equal(after.decision.policySetHash, engine.policySetHash)
  t.same(engine.lastReload, status)
})

t.test('a reload starts the new set without slices, and its answers come from its own policies', async (t) => {
  const dir = writePolicyDir(t.testdir(), { 'a.cedar': PERMIT_MINI })
  const engine = new PolicyEngine({ dir })
  engine.decide(mini)
  engine.decide(other)
  t.equal(engine.slicesPreparsed, 2, 'gpt-4o-mini has the permit in its slice; gpt-4.1-mini has an empty one')
  // A policy in front shifts every position; a forbid now applies to gpt-4o-mini.
  writeFileSync(join(dir, 'a.cedar'), '@id("no-mini")\nforbid (principal, action, resource == ModelGate::Model::"openai/gpt-4o-mini");\n' + PERMIT_MINI)
  t.match(await engine.reload(), { ok: true, changed: true })
  t.equal(engine.slicesPreparsed, 0)
  t.match(engine.decide(mini).decision, { effect: 'deny', policies: [{ id: 'no-mini' }], cached: false })
  t.match(engine.decide(other).decision, { effect: 'deny', policies: [], cached: false })
  t.equal(engine.slicesPreparsed, 2)
})

t.test('reloading unchanged files changes nothing', async (t) => {
  const dir = writePolicyDir(t.testdir(), { 'a.cedar': PERMIT_MINI })
  const engine = new PolicyEngine({ dir })
  engine.decide(mini)
  const status = await engine.reload()
  t.match(status, { ok: true, changed: false })
  t.equal(engine.decide(mini).decision.cached, true, 'the cache is kept')
})

t.test('a broken change is refused while the last good set keeps answering', async (t) => {
  const dir = writePolicyDir(t.testdir(), { 'a.cedar': PERMIT_MINI })
  const logger = recordingLogger()
  const engine = new PolicyEngine({ dir, logger })
  const good = engine.policySetHash
  writeFileSync(join(dir, 'a.cedar'), PERMIT_MINI + '\n@id("typo")\npermit (principal, action, resource) when { principal.teem == "x" };\n')
  const status = await engine.reload()
  t.equal(status.ok, false)
  t.equal(status.changed, false)
  t.equal(status.hash, good)
  t.equal(engine.policySetHash, good)
  t.match(status.problems.find((p) => p.severity === 'error'), { file: join(dir, 'a.cedar'), line: 10, message: /attribute `teem`/ })
  t.match(logger.lines.join('\n'), /error policy reload refused; keeping the active policy set .*a\.cedar:10:\d+: error: .*teem/)
  t.equal(engine.decide(mini).decision.effect, 'allow', 'still serving the old set')
  t.equal(engine.decide(other).decision.effect, 'deny')

  writeFileSync(join(dir, 'a.cedar'), ALLOW_ALL)
  t.match(await engine.reload(), { ok: true, changed: true })
  t.equal(engine.decide(other).decision.effect, 'allow', 'a fixed change is taken')
})

t.test('a vanished directory keeps the last good set', async (t) => {
  const root = t.testdir()
  const dir = writePolicyDir(join(root, 'p'), { 'a.cedar': PERMIT_MINI })
  const engine = new PolicyEngine({ dir, logger: recordingLogger() })
  renameSync(dir, join(root, 'gone'))
  const status = await engine.reload()
  t.match(status, { ok: false, problems: [{ message: /cannot read the policy directory/ }] })
  t.equal(engine.decide(mini).decision.effect, 'allow')
})

t.test('no request fails while a reload is under way', async (t) => {
  const dir = writePolicyDir(t.testdir(), { 'a.cedar': PERMIT_MINI })
  const engine = new PolicyEngine({ dir, cacheSize: 0 })
  const hashes = new Set<string>()
  let decisions = 0
  let stop = false
  const traffic = (async () => {
    while (!stop) {
      const r = engine.decide(mini)
      t.equal(r.decision.effect, 'allow')
      hashes.add(r.decision.policySetHash)
      decisions++
      await new Promise((res) => setImmediate(res))
    }
  })()
  for (let i = 0; i < 5; i++) {
    writeFileSync(join(dir, 'a.cedar'), PERMIT_MINI + `\n// revision ${i}\n`)
    t.match(await engine.reload(), { ok: true, changed: true })
    writeFileSync(join(dir, 'a.cedar'), 'permit (') // broken mid-way: refused
    t.match(await engine.reload(), { ok: false })
  }
  stop = true
  await traffic
  t.ok(decisions > 0)
  t.ok(hashes.size >= 2, 'traffic saw more than one set')
})

t.test('concurrent reloads share one run and a change during a reload is picked up', async (t) => {
  const dir = writePolicyDir(t.testdir(), { 'a.cedar': PERMIT_MINI })
  const engine = new PolicyEngine({ dir })
  writeFileSync(join(dir, 'a.cedar'), ALLOW_ALL)
  const a = engine.reload()
  const b = engine.reload()
  t.equal(a, b)
  await a
  t.equal(engine.decide(other).decision.effect, 'allow')
})

t.test('with watch on', async (t) => {
  t.test('an edited file is reloaded without a call', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': PERMIT_MINI })
    const engine = new PolicyEngine({ dir, watch: true, reloadDebounceMs: 20, pollIntervalMs: 0 })
    t.teardown(() => engine.close())
    const reloaded = nextReload(engine, (s) => s.changed)
    writeFileSync(join(dir, 'a.cedar'), ALLOW_ALL)
    await reloaded
    t.equal(engine.decide(other).decision.effect, 'allow')
  })

  t.test('a Kubernetes ConfigMap update (..data symlink swap) is reloaded', async (t) => {
    // The kubelet's layout: real files in a timestamped hidden directory,
    // `..data` pointing at it, and top-level symlinks through `..data`.
    const dir = t.testdir()
    const v1 = writePolicyDir(join(dir, '..2025_01_01_00_00_00.000000001'), { 'a.cedar': PERMIT_MINI })
    symlinkSync('..2025_01_01_00_00_00.000000001', join(dir, '..data'))
    symlinkSync('..data/a.cedar', join(dir, 'a.cedar'))
    symlinkSync('..data/modelgate.cedarschema', join(dir, 'modelgate.cedarschema'))
    const engine = new PolicyEngine({ dir, watch: true, reloadDebounceMs: 20, pollIntervalMs: 0 })
    t.teardown(() => engine.close())
    t.equal(engine.policies.size, 1)
    t.equal(engine.decide(other).decision.effect, 'deny')

    const reloaded = nextReload(engine, (s) => s.changed)
    writePolicyDir(join(dir, '..2025_01_01_00_05_00.000000002'), { 'a.cedar': ALLOW_ALL })
    symlinkSync('..2025_01_01_00_05_00.000000002', join(dir, '..data_tmp'))
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
    rmSync(v1, { recursive: true })
    await reloaded
    t.equal(engine.decide(other).decision.effect, 'allow')
    t.same([...engine.policies.keys()], ['allow-all'])
  })

  t.test('a broken ConfigMap update is refused and traffic keeps flowing', async (t) => {
    const dir = t.testdir()
    writePolicyDir(join(dir, '..v1'), { 'a.cedar': PERMIT_MINI })
    symlinkSync('..v1', join(dir, '..data'))
    symlinkSync('..data/a.cedar', join(dir, 'a.cedar'))
    symlinkSync('..data/modelgate.cedarschema', join(dir, 'modelgate.cedarschema'))
    const engine = new PolicyEngine({ dir, watch: true, reloadDebounceMs: 20, pollIntervalMs: 0, logger: recordingLogger() })
    t.teardown(() => engine.close())
    const hash = engine.policySetHash
    const refused = nextReload(engine, (s) => !s.ok)
    mkdirSync(join(dir, '..v2'))
    writeFileSync(join(dir, '..v2', 'modelgate.cedarschema'), SCHEMA_TEXT)
    writeFileSync(join(dir, '..v2', 'a.cedar'), '@id("x")\npermit (principal, action, resource) when { context.nope };\n')
    symlinkSync('..v2', join(dir, '..data_tmp'))
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
    const s = await refused
    t.match(s.problems, [{ line: 2, message: /attribute `nope`/ }])
    t.equal(engine.policySetHash, hash)
    t.equal(engine.decide(mini).decision.effect, 'allow')
  })

  t.test('close stops watching', async (t) => {
    const dir = writePolicyDir(t.testdir(), { 'a.cedar': PERMIT_MINI })
    const engine = new PolicyEngine({ dir, watch: true, reloadDebounceMs: 10, pollIntervalMs: 20 })
    engine.close()
    let reloads = 0
    engine.onReload(() => reloads++)
    writeFileSync(join(dir, 'a.cedar'), ALLOW_ALL)
    await new Promise((r) => setTimeout(r, 150))
    t.equal(reloads, 0)
    t.equal(engine.decide(other).decision.effect, 'deny')
  })
})

t.test('the shadow set reloads with the primary one', async (t) => {
  const root = t.testdir()
  const primary = writePolicyDir(join(root, 'primary'), { 'a.cedar': ALLOW_ALL })
  const shadow = writePolicyDir(join(root, 'shadow'), { 'b.cedar': PERMIT_MINI }, { schema: false })
  const engine = new PolicyEngine({ dir: primary, shadowDir: shadow })
  const before = engine.shadowPolicySetHash
  t.equal(engine.decide(other).decision.shadow?.effect, 'deny')
  writeFileSync(join(shadow, 'b.cedar'), ALLOW_ALL)
  await engine.reload()
  t.not(engine.shadowPolicySetHash, before)
  t.equal(engine.decide(other).decision.shadow?.effect, 'allow')
})

t.test('the watcher polls when a directory cannot be watched yet', async (t) => {
  const missing = join(t.testdir(), 'later')
  let calls = 0
  const logger = recordingLogger()
  const w = watchDirectories([missing], () => calls++, { debounceMs: 5, pollIntervalMs: 20, logger })
  t.teardown(() => w.close())
  await new Promise((r) => setTimeout(r, 200))
  t.ok(calls >= 1, 'polled')
  t.match(logger.lines.join('\n'), /cannot watch policy directory; relying on polling/)
})
