/**
 * The provider stage: recognises the provider API from the path, checks the
 * method, content type and encoding, has the body inspected once (parsed into
 * ctx.out.request for every later stage and, with redaction on, scanned: see
 * inspection/), and reads the model and token usage back from the response.
 */
import { GateError } from '../errors.ts'
import type { ProvidersConfig } from '../config/sections/providers.ts'
import { addRequestBodyEdit } from '../inspection/edits.ts'
import type { RequestContext } from '../pipeline/context.ts'
import type { Stage } from '../pipeline/stage.ts'
import { decodeBuffered, DecodeError, MAX_STACKED_CODINGS, parseContentEncoding, SUPPORTED_CODINGS, type Coding } from '../redaction/encoding.ts'
import { inProcessInspector, type BodyInspector } from '../inspection/inspector.ts'
import { bodyFacts, SseFactsReader } from './response.ts'
import { compileCatalog, PROVIDER_METADATA_KEY, type ProviderCatalog } from './catalog.ts'
import type { ApiRoute } from './routes.ts'
import type { ParsedRequest, ToolDefinition } from './types.ts'

export { PROVIDER_METADATA_KEY }

const ROUTE = Symbol('provider.route')
const SSE = Symbol('provider.sse')

/** The provider the Envoy route declares through the ext_proc stream's metadata, if any. */
export function routeProviderName(ctx: RequestContext): string | undefined {
  const name = ctx.streamMetadata.get(PROVIDER_METADATA_KEY)
  return name !== undefined && name !== '' ? name : undefined
}

/**
 * The request body with its content-codings undone, by the parser and decoder
 * responses use too, so both directions accept the same codings: gzip
 * (x-gzip), deflate (zlib-wrapped, or raw as some clients send it) and br,
 * stacked in any order (undone last-first, at most MAX_STACKED_CODINGS). Every
 * step's output is bounded by `maxBytes`: a decompression bomb stops there.
 */
function decode(body: Buffer, codings: readonly Coding[], maxBytes: number): Buffer {
  try {
    return decodeBuffered(body, codings, maxBytes)
  } catch (err) {
    const cause = err instanceof DecodeError ? (err.cause as NodeJS.ErrnoException | undefined) : undefined
    if (cause?.code === 'ERR_BUFFER_TOO_LARGE') throw new GateError('MG_BODY_TOO_LARGE', { internal: `decoded ${codings.join(', ')} body exceeds ${maxBytes} bytes` })
    throw new GateError('MG_BODY_MALFORMED', { details: { problem: `the ${codings.join(', ')} body does not decode` }, internal: (err as Error).message })
  }
}

/**
 * A tool type the tool map does not know is refused unless the configuration
 * lists it: modelgate cannot say what such a tool does, nor read its calls.
 */
function refuseUnknownToolTypes(tools: readonly ToolDefinition[], allowed: ReadonlySet<string>): void {
  for (const t of tools) {
    if (t.known === true || allowed.has(t.type)) continue
    // The type is the caller's text: repeated (to the caller, the log, the audit trail) only when it reads like a tool type.
    const type = TYPE_NAME.test(t.type) ? t.type : '[omitted]'
    throw new GateError('MG_TOOL_TYPE_UNKNOWN', {
      // `tool_type`: an error document's own `type` field cannot carry it.
      details: { field: t.field ?? 'tools', tool_type: type },
      internal: `${t.field ?? 'a tool'} declares the tool type ${type}, which the tool map does not know and providers.allowedToolTypes does not list`,
    })
  }
}

/** How every provider's tool types are written: lower-case words, digits and underscores. */
const TYPE_NAME = /^[a-z][a-z0-9_]{0,127}$/

export interface ProviderStageOptions {
  readonly config: ProvidersConfig
  /** The catalog compiled from `config` (compiled here when not given). */
  readonly catalog?: ProviderCatalog
  readonly maxBodyBytes: number
  /**
   * Parses (and, with redaction on, scans) the body, in this thread or in the
   * worker pool. Default: in this thread, parsing only, default JSON limits.
   */
  readonly inspector?: BodyInspector
}

/** The Azure OpenAI path with another deployment (the query stays as sent). */
function withDeployment(rawPath: string, deployment: string, target: string): string {
  const prefix = `/openai/deployments/${deployment}`
  return `/openai/deployments/${target}${rawPath.slice(prefix.length)}`
}

export function createProviderStage(opts: ProviderStageOptions): Stage {
  const catalog = opts.catalog ?? compileCatalog(opts.config)
  const allowedToolTypes: ReadonlySet<string> = new Set(opts.config.allowedToolTypes ?? [])
  const inspector = opts.inspector ?? inProcessInspector()
  return {
    name: 'provider',
    produces: ['target', 'request', 'reply'],
    requestHeaders(ctx) {
      const declared = routeProviderName(ctx)
      const match = catalog.match(ctx.path, declared)
      // No path in the details: the caller knows it, and a refused path may carry a secret the audit must not keep.
      if (!match) {
        const known = declared === undefined || catalog.get(declared) !== undefined
        throw new GateError('MG_ROUTE_UNSUPPORTED', { internal: known ? 'the path is not an API path of this provider route' : `route names provider "${declared}", which is not in providers.catalog` })
      }
      const route = match.route
      ctx.put('target', { route, provider: match.provider })
      ctx.dialect = route.kind === 'anthropic' ? 'anthropic' : route.kind === 'mcp' ? 'mcp' : 'openai'
      if (ctx.method !== 'POST') throw new GateError('MG_METHOD_UNSUPPORTED', { details: { method: ctx.method.slice(0, 16) } })
      ctx.local(ROUTE, () => route)
      // Ask for an uncompressed response so every byte can be inspected on the way back.
      ctx.requestHeaderChanges.setHeader('accept-encoding', 'identity')
    },
    requestBody(ctx) {
      const route = ctx.local<ApiRoute | undefined>(ROUTE, () => undefined)
      if (!route) throw new GateError('MG_ROUTE_UNSUPPORTED', { internal: 'request body without a recognised route' })
      const contentType = (ctx.requestHeaders.get('content-type') ?? '').toLowerCase()
      const mediaType = contentType.split(';')[0]!.trim()
      if (mediaType !== 'application/json' && !/^application\/[a-z0-9.+-]*\+json$/.test(mediaType)) {
        throw new GateError('MG_CONTENT_TYPE_UNSUPPORTED', { details: { content_type: contentType.slice(0, 100) } })
      }
      const encoding = ctx.requestHeaders.get('content-encoding') ?? ''
      const codings = parseContentEncoding(encoding)
      if (!codings) {
        throw new GateError('MG_CONTENT_ENCODING_UNSUPPORTED', {
          details: { content_encoding: encoding.slice(0, 100), supported: [...SUPPORTED_CODINGS], max_stacked: MAX_STACKED_CODINGS },
        })
      }
      if (codings.length > 0) {
        // Decode, and send upstream exactly the bytes that were inspected.
        ctx.replaceRequestBody(decode(ctx.requestBody, codings, opts.maxBodyBytes))
        ctx.requestHeaderChanges.removeHeader('content-encoding')
      }
      if (ctx.requestBody.length === 0) throw new GateError('MG_BODY_MALFORMED', { details: { problem: 'the body is empty' } })
      const provider = ctx.out.target?.provider
      if (!provider) throw new GateError('MG_ROUTE_UNSUPPORTED', { internal: 'request body without a catalogued provider' })
      // A provider's kind must agree with the API the path speaks (openai-compatible kinds share parsers).
      const compatible = provider.kind === route.kind || (provider.kind !== 'anthropic' && route.kind !== 'anthropic')
      if (!compatible) throw new GateError('MG_ROUTE_UNSUPPORTED', { internal: `path ${route.api} does not belong to provider kind ${provider.kind}` })
      const afterInspection = (request: ParsedRequest): void => {
        ctx.put('request', request)
        refuseUnknownToolTypes(request.tools, allowedToolTypes)
        // The model the request goes to: an alias becomes its target, which the provider must serve. Policy decides on the target.
        const { model, alias } = provider.resolveModel(request.model)
        // The name is the caller's text: it stays out of the answer and the log (it may even hold a secret).
        if (!provider.serves(model)) throw new GateError('MG_MODEL_NOT_SERVED', { details: { provider: provider.name }, internal: `provider "${provider.name}" does not list the requested model` })
        if (alias === undefined) return
        if (route.deployment !== undefined) ctx.requestHeaderChanges.setHeader(':path', withDeployment(ctx.path, route.deployment, model))
        else if (request.modelSpan) addRequestBodyEdit(ctx, { start: request.modelSpan.start, end: request.modelSpan.end, text: JSON.stringify(model) })
        ctx.put('request', Object.freeze({ ...request, model, requestedModel: alias }))
      }
      // One decode and parse of the body: the parsed request here, its leaves for redaction.
      const parsed = inspector.inspect(ctx, route, provider.name)
      // Answered at once unless a worker inspects the body: then the phase waits for it.
      if (!('then' in parsed)) return afterInspection(parsed)
      return parsed.then(afterInspection)
    },
    responseBody(ctx, chunk) {
      if (ctx.responseStreaming) {
        // The reader's facts are the request's `reply`, filled in as events complete.
        const reader = ctx.local(SSE, () => {
          const r = new SseFactsReader()
          ctx.put('reply', r.facts)
          return r
        })
        reader.feed(chunk.data, chunk.end)
        return
      }
      // A buffered body: JSON, or SSE frames declared as another type. Its content decides, as for redaction.
      if (!chunk.end) return
      const facts = bodyFacts(chunk.data)
      if (facts) ctx.put('reply', facts)
    },
  }
}
