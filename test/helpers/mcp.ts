/** What the MCP end-to-end tests read from the official SDK client. */
import { McpError } from '@modelcontextprotocol/sdk/types.js'

/** The text of a tool result's content blocks. */
export function textOf(result: unknown): string {
  return ((result as { content: { text: string }[] }).content ?? []).map((c) => c.text).join('')
}

/** The McpError the SDK raises for a refused call (anything else fails the test). */
export async function refusal(p: Promise<unknown>): Promise<McpError> {
  try {
    await p
  } catch (err) {
    if (err instanceof McpError) return err
    throw err
  }
  throw new Error('the call was not refused')
}
