/**
 * The container image without a container engine: what the Dockerfile
 * copies exists, it builds on Node 24 and runs as an unprivileged user, the
 * chart runs it by default, and the image's file layout (the compiled
 * sources, bin/, proto/, and the production dependencies only) starts
 * `modelgate serve` on the configuration the chart renders.
 */
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, cpSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parse, stringify } from 'yaml'
import { checkHealth } from '../../src/cli/health.ts'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { configFiles, container, render, valueSets } from '../helpers/chart.ts'

const run = promisify(execFile)
const DOCKERFILE = join(REPO_ROOT, 'scripts', 'container', 'Dockerfile')
const text = readFileSync(DOCKERFILE, 'utf8')
const instructions = text
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'))
const stages = instructions.reduce<string[][]>((acc, l) => (l.startsWith('FROM ') ? [...acc, [l]] : (acc.at(-1)!.push(l), acc)), [])
const final = stages.at(-1)!

t.test('every file the Dockerfile copies from the repository exists', async (t) => {
  const copies = instructions.filter((l) => l.startsWith('COPY ') && !l.includes('--from='))
  t.ok(copies.length >= 6)
  for (const c of copies) {
    const sources = c.split(/\s+/).slice(1, -1)
    for (const s of sources) t.ok(existsSync(join(REPO_ROOT, s)), `${s} exists`)
  }
  const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'))
  for (const c of copies) for (const s of c.split(/\s+/).slice(1, -1)) t.notOk(ignored.includes(s.replace(/^\.\//, '')), `${s} is not excluded from the build context`)
})

t.test('Node 24 in both stages; the image runs as a numeric non-root user without npm; the chart runs this image', async (t) => {
  for (const s of stages) t.match(s[0], /^FROM node:24-/, s[0])
  const user = final.find((l) => l.startsWith('USER '))
  t.match(user, /^USER [1-9][0-9]*:[1-9][0-9]*$/, 'a numeric non-root user')
  t.ok(final.some((l) => l.startsWith('RUN rm -rf') && l.includes('/usr/local/bin/npm')), 'npm is removed from the runtime image')
  t.ok(stages[0]!.some((l) => l.includes('npm prune --omit=dev')), 'development dependencies are pruned before the copy')
  const cmd = JSON.parse(final.find((l) => l.startsWith('CMD '))!.slice(4)) as string[]
  const docs = await render(valueSets().minimal)
  const mg = container(docs, 'modelgate')
  t.equal(mg.image, 'ghcr.io/modelgate/modelgate:0.1.0', "the chart's default image is this one, tagged with the chart's appVersion")
  t.same(mg.args, cmd, 'the chart passes the same arguments as the image’s default command')
  const chart = parse(readFileSync(join(REPO_ROOT, 'charts', 'modelgate', 'Chart.yaml'), 'utf8')) as { appVersion: string }
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
  t.equal(chart.appVersion, pkg.version, "the chart's appVersion is the package version")
})

t.test('the image layout with production dependencies only serves on the configuration the chart renders', async (t) => {
  const app = mkdtempSync(join(tmpdir(), 'mgimg-'))
  t.teardown(() => rmSync(app, { recursive: true, force: true }))
  // /app as the Dockerfile lays it out: dist (compiled as the build stage does), bin, proto, policies, package.json.
  await run(join(REPO_ROOT, 'node_modules', '.bin', 'tsc'), ['-p', join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', join(app, 'dist')])
  for (const d of ['bin', 'proto', 'policies']) cpSync(join(REPO_ROOT, d), join(app, d), { recursive: true })
  cpSync(join(REPO_ROOT, 'package.json'), join(app, 'package.json'))
  // node_modules: the packages package-lock.json does not mark as development-only.
  const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> }
  const production = Object.entries(lock.packages)
    .filter(([path, p]) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path) && !p.dev)
    .map(([path]) => path)
  t.ok(production.length > 20, `${production.length} production packages`)
  for (const dev of ['typescript', 'tap', 'kubernetes-models', 'fast-check']) t.notOk(production.includes(`node_modules/${dev}`), `${dev} (development only) is not among them`)
  for (const path of production) {
    mkdirSync(join(app, path, '..'), { recursive: true })
    symlinkSync(join(REPO_ROOT, path), join(app, path), 'dir')
  }

  // The chart's modelgate.yaml, its pod paths under a scratch root.
  const root = join(app, 'pod')
  const rendered = configFiles(await render(valueSets().minimal))['modelgate.yaml']!
  const cfg = parse(rendered.replace(/\/(run\/modelgate|var\/lib\/modelgate|etc\/modelgate)\b/g, `${root}/$1`))
  mkdirSync(join(root, 'run', 'modelgate'), { recursive: true })
  cpSync(join(REPO_ROOT, 'policies'), join(root, 'etc', 'modelgate', 'policies'), { recursive: true })
  const configFile = join(root, 'etc', 'modelgate', 'config', 'modelgate.yaml')
  mkdirSync(join(configFile, '..'), { recursive: true })
  writeFileSync(configFile, stringify(cfg))

  const entry = [process.execPath, '--max-semi-space-size=8', join(app, 'bin', 'modelgate.js')]
  const env = { PATH: process.env.PATH ?? '', NODE_ENV: 'production', MALLOC_ARENA_MAX: '2', MODELGATE_LOG_LEVEL: 'error' }
  const check = await run(entry[0]!, [...entry.slice(1), 'serve', '--check', '--config', configFile], { env, cwd: app })
  t.match(check.stdout, /configuration is valid/, 'modelgate serve --check accepts it')

  const serve = spawn(entry[0]!, [...entry.slice(1), 'serve', '--config', configFile], { env, cwd: app, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  serve.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  const exited = new Promise<number | null>((resolve) => serve.once('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (serve.exitCode === null) serve.kill('SIGKILL')
  })
  const address = cfg.server.listen as string
  let status = ''
  for (let i = 0; i < 100 && status !== 'SERVING' && serve.exitCode === null; i++) {
    status = await checkHealth(address, 1000).catch(() => '')
    if (status !== 'SERVING') await new Promise((r) => setTimeout(r, 200))
  }
  t.equal(status, 'SERVING', `modelgate serves grpc.health.v1 on ${address}${stderr ? `\n${stderr}` : ''}`)
  serve.kill('SIGTERM')
  t.equal(await exited, 0, 'and exits 0 on SIGTERM')
})
