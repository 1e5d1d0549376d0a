#!/usr/bin/env node
// Runs the compiled CLI when present (npm run build), else the TypeScript sources on Node 24.
import { existsSync } from 'node:fs'
const compiled = new URL('../dist/cli/main.js', import.meta.url)
const { main } = await import(existsSync(compiled) ? compiled.href : new URL('../src/cli/main.ts', import.meta.url).href)
process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  cwd: process.cwd(),
  env: process.env,
})
