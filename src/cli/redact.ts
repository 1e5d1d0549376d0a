/**
 * `modelgate redact`: shows what a request body looks like after redaction.
 * It runs the same two stages as the server (scan, then apply) on a body read
 * from a file or stdin, writes to stdout exactly the bytes that would go
 * upstream, and writes the findings (never the values) as JSON.
 *
 * Exit codes: 0 forwarded (possibly redacted), 3 blocked, 2 usage error.
 * Policy permissions (Cedar) are not consulted: the configured class actions apply.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { ConfigError, loadConfigFile } from '../config/config.ts'
import type { RedactionConfig } from '../config/sections/redaction.ts'
import { GateError } from '../errors.ts'
import { silentLogger } from '../log.ts'
import { inProcessInspector, type BodyInspector } from '../inspection/inspector.ts'
import { JsonDocumentError, parseJsonDocument } from '../json/document.ts'
import { RequestContext } from '../pipeline/context.ts'
import { matchRoute, type ApiRoute } from '../providers/routes.ts'
import { redactionConfigFrom } from '../redaction/engine.ts'
import { createRedactionStages, treatBodyAsText } from '../redaction/stage.ts'
import { EXIT_USAGE, readAll, type CliIO } from './io.ts'

export const EXIT_BLOCKED = 3

const FORMATS = ['auto', 'openai', 'anthropic', 'text'] as const
type Format = (typeof FORMATS)[number]

const USAGE = `usage: modelgate redact [--input FILE] [--format auto|openai|anthropic|text] [--findings FILE] [--config FILE]

Reads a request body (stdin unless --input), writes to stdout exactly what
modelgate would send upstream, and writes the findings as JSON (detector,
class, location, offsets, salted hash; never the value) to --findings FILE
(default: stderr).

  --input FILE      read the body from FILE instead of stdin
  --format F        auto (default): detect the provider format from the body;
                    openai, anthropic: parse as that provider's request;
                    text: treat the whole body as one text
  --findings FILE   write the findings JSON to FILE ("-" for stdout is not allowed)
  --config FILE     use the redaction section of a modelgate configuration file

exit status: 0 forwarded (possibly redacted), 3 blocked, 2 usage error`

export async function run(argv: string[], io: CliIO): Promise<number> {
  let values: { input?: string; format?: string; findings?: string; config?: string; help?: boolean }
  try {
    ;({ values } = parseArgs({
      args: argv,
      options: {
        input: { type: 'string' },
        format: { type: 'string' },
        findings: { type: 'string' },
        config: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    }))
  } catch (err) {
    io.stderr.write(`modelgate redact: ${(err as Error).message}\n\n${USAGE}\n`)
    return EXIT_USAGE
  }
  if (values.help) {
    io.stdout.write(USAGE + '\n')
    return 0
  }
  const problems: string[] = []
  const format = (values.format ?? 'auto') as Format
  if (!FORMATS.includes(format)) problems.push(`--format must be one of ${FORMATS.join(', ')} (got "${values.format}")`)
  if (values.findings === '-') problems.push('--findings "-" would mix findings into the body on stdout; give a file name')
  let config: RedactionConfig | undefined
  if (values.config !== undefined) {
    try {
      config = loadConfigFile(resolve(io.cwd, values.config)).redaction
    } catch (err) {
      problems.push(err instanceof ConfigError ? err.message : `--config: ${(err as Error).message}`)
    }
  }
  let body: Buffer | undefined
  try {
    body = values.input !== undefined ? readFileSync(resolve(io.cwd, values.input)) : await readAll(io.stdin)
  } catch (err) {
    problems.push(`cannot read ${values.input ?? 'stdin'}: ${(err as Error).message}`)
  }
  if (problems.length > 0 || !body) {
    io.stderr.write(problems.map((p) => `modelgate redact: ${p}\n`).join('') + `\n${USAGE}\n`)
    return EXIT_USAGE
  }

  let stages
  try {
    stages = createRedactionStages(config ?? redactionConfigFrom({}), { logger: silentLogger })
  } catch (err) {
    io.stderr.write(`modelgate redact: ${(err as Error).message}\n`)
    return EXIT_USAGE
  }

  const ctx = new RequestContext()
  ctx.requestBody = body
  if (format !== 'text') {
    // The same inspection as the server's (in this thread): parse, provider parse, scan.
    const inspector = inProcessInspector({ ...(stages.engine.config.enabled ? { engine: stages.engine } : {}), budgetMs: 60_000 })
    const problem = await inspectBody(ctx, inspector, format)
    if (problem !== undefined) {
      io.stderr.write(`modelgate redact: ${problem}\n`)
      return EXIT_USAGE
    }
  }

  let blocked: GateError | undefined
  try {
    if (format === 'text') treatBodyAsText(ctx)
    await stages.scan.requestBody!(ctx)
    await stages.apply.requestBody!(ctx)
  } catch (err) {
    if (err instanceof GateError && err.code === 'MG_DATA_BLOCKED') blocked = err
    else throw err
  }

  const report = {
    forwarded: blocked === undefined,
    ...(blocked ? { error: { code: blocked.code, message: blocked.message, ...blocked.details } } : {}),
    data_classes: [...ctx.dataClasses].sort(),
    findings: ctx.findings.map((f) => ({
      detector: f.detector,
      class: f.dataClass,
      confidence: f.confidence,
      location: f.location,
      start: f.start,
      length: f.length,
      hash: f.hash,
      action: f.action,
    })),
  }
  const reportText = JSON.stringify(report, null, 2) + '\n'
  if (values.findings !== undefined) writeFileSync(resolve(io.cwd, values.findings), reportText)
  else io.stderr.write(reportText)
  if (blocked) return EXIT_BLOCKED
  io.stdout.write(ctx.requestBody)
  return 0
}

/**
 * Inspects a body for a provider format (the server's parse and scan). Returns
 * a message when it does not fit; with `auto`, a body that is not a JSON
 * object is left for a text scan.
 */
async function inspectBody(ctx: RequestContext, inspector: BodyInspector, format: Format): Promise<string | undefined> {
  let json: unknown
  try {
    json = parseJsonDocument(ctx.requestBody).value
  } catch (err) {
    if (!(err instanceof JsonDocumentError)) throw err
    if (format === 'auto' && err.code === 'MG_BODY_MALFORMED') return undefined
    return `the body is not usable JSON (${err.code}: ${JSON.stringify(err.details)}); use --format text for plain text`
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) return format === 'auto' ? undefined : 'the body must be a JSON object'
  const o = json as Record<string, unknown>
  const path = format === 'anthropic' || (format === 'auto' && looksAnthropic(o)) ? '/v1/messages' : openaiPath(o)
  const route: ApiRoute = matchRoute(path)!
  try {
    ctx.put('request', await inspector.inspect(ctx, route, route.kind))
    return undefined
  } catch (err) {
    if (!(err instanceof GateError)) throw err
    return `the body is not a valid ${route.api} request: ${JSON.stringify({ code: err.code, ...err.details })}`
  }
}

function openaiPath(o: Record<string, unknown>): string {
  if (Array.isArray(o.messages)) return '/v1/chat/completions'
  if ('input' in o && !('prompt' in o)) return typeof o.model === 'string' && /embed/i.test(o.model) ? '/v1/embeddings' : '/v1/responses'
  if ('prompt' in o) return '/v1/completions'
  return '/v1/chat/completions'
}

/** Anthropic Messages: a top-level system, or content blocks only Anthropic uses. */
function looksAnthropic(o: Record<string, unknown>): boolean {
  if (!Array.isArray(o.messages)) return false
  if ('system' in o || 'anthropic_version' in o || 'stop_sequences' in o) return true
  for (const m of o.messages as unknown[]) {
    const content = (m as { content?: unknown })?.content
    if (Array.isArray(content)) {
      for (const b of content) {
        const t = (b as { type?: unknown })?.type
        if (t === 'tool_use' || t === 'tool_result' || t === 'thinking' || (t === 'image' && 'source' in (b as object))) return true
      }
    }
  }
  return false
}
