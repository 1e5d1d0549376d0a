#!/usr/bin/env node
// The `modelgate` command (`npx modelgate …` in a checkout). modelgate runs on
// Node.js 24: started by an older node (whatever `node` is first on PATH), this
// file runs itself again on the Node 24 the repository pins (node_modules/node,
// installed by `npm run setup`), passing signals on and exiting as it exits.
// On Node 24 it runs the compiled CLI when present (npm run build), else the
// TypeScript sources, which Node 24 runs directly.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const REQUIRED_MAJOR = 24
const major = Number(process.versions.node.split('.')[0])

if (major < REQUIRED_MAJOR) {
  const pinned = [new URL('../node_modules/node/bin/node', import.meta.url), new URL('../node_modules/.bin/node', import.meta.url)].map((u) => fileURLToPath(u)).find((p) => existsSync(p))
  if (!pinned) {
    process.stderr.write(
      `modelgate needs Node.js ${REQUIRED_MAJOR}; this is ${process.version}. Run \`npm run setup\` in the modelgate checkout (it installs the pinned Node.js ${REQUIRED_MAJOR}), or put Node.js ${REQUIRED_MAJOR} first on PATH.\n`,
    )
    process.exit(1)
  }
  // The child stops by itself should this process be killed outright (see src/dev/process.ts).
  const child = spawn(pinned, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, MODELGATE_EXIT_WITH_PARENT: '1' } })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal))
  child.on('error', (err) => {
    process.stderr.write(`modelgate: cannot run ${pinned}: ${err.message}\n`)
    process.exit(1)
  })
  child.on('exit', (code, signal) => {
    if (signal) {
      // Die of the same signal, so the caller sees what the child saw.
      for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.removeAllListeners(s)
      process.kill(process.pid, signal)
    } else process.exit(code ?? 1)
  })
} else {
  const compiled = new URL('../dist/cli/main.js', import.meta.url)
  const { main } = await import(existsSync(compiled) ? compiled.href : new URL('../src/cli/main.ts', import.meta.url).href)
  if (process.env.MODELGATE_EXIT_WITH_PARENT === '1') (await import(existsSync(compiled) ? new URL('../dist/dev/process.js', import.meta.url).href : new URL('../src/dev/process.ts', import.meta.url).href)).exitWithParent()
  process.exitCode = await main(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    cwd: process.cwd(),
    env: process.env,
  })
}
