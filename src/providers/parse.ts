/**
 * Parsing provider request bodies into a ParsedRequest: an MCP message is
 * read by src/mcp, a model API's body by that API's module
 * (providers/apis/: the model, stream flag, output budget and every tool the
 * request names, with the shape of the fields that carry them checked).
 * Shape errors are reported with the field that is wrong. Which texts a body
 * carries is not the parser's business: redaction scans every leaf of the
 * body (redaction/document.ts).
 */
import { GateError } from '../errors.ts'
import type { ApiRoute } from './routes.ts'
import { findApi } from './apis/index.ts'
import { invalid, isObj } from './apis/fields.ts'
import { parseMcpMessage } from '../mcp/protocol.ts'
import type { ParsedRequest } from './types.ts'

/**
 * Parses a JSON body for a known API route. `json` is the already-decoded JSON
 * value; `providerName` is the logical provider from the route metadata.
 */
export function parseProviderRequest(route: ApiRoute, json: unknown, providerName: string): ParsedRequest {
  if (route.kind === 'mcp') {
    // One JSON-RPC message; the MCP stage decides what it may do.
    const mcp = parseMcpMessage(json)
    return Object.freeze({ provider: 'mcp', providerName, operation: 'mcp', api: route.api, model: '', stream: false, maxTokens: undefined, tools: [], mcp })
  }
  if (!isObj(json)) throw invalid('', 'the body must be a JSON object')
  const api = findApi(route.api)
  if (!api) throw new GateError('MG_ROUTE_UNSUPPORTED', { internal: `no parser for ${route.api}` })
  return api.parseRequest(json, route, providerName)
}
