import { GateError } from '../../../../src/errors.ts'
import { absorbUsage, type ProviderApi, type ResponseFacts } from '../../../../src/providers/apis/api.ts'
import { matchRoute, type ApiRoute } from '../../../../src/providers/routes.ts'

/** The route of an API path (a test's own path: it must be one). */
export function route(path: string): ApiRoute {
  const r = matchRoute(path)
  if (!r) throw new Error(`${path} is no API route`)
  return r
}

/** The refusal a body gets: its code, field and problem; undefined when the body is accepted. */
export function refusal(api: ProviderApi, path: string, body: Record<string, unknown>): { code: string; field: unknown; problem: unknown } | undefined {
  try {
    api.parseRequest(body, route(path), 'p')
    return undefined
  } catch (err) {
    if (!(err instanceof GateError)) throw err
    return { code: err.code, field: err.details.field, problem: err.details.problem }
  }
}

/** What a module reads from a body, or from a stream's events in order. */
export function usageOf(api: ProviderApi, ...objects: unknown[]): ResponseFacts {
  const facts: ResponseFacts = { model: undefined, usage: { input: undefined, output: undefined } }
  for (const o of objects) absorbUsage(api.usage, facts, o)
  return facts
}
