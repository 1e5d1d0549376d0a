/**
 * The default provider catalog (OpenAI and Anthropic at their public
 * upstreams) with `none: true` credentials: for tests of the server and its
 * stages that are not about credentials, so requests are not refused for
 * want of one (MG_CREDENTIAL_MISSING).
 */
export function keylessCatalog(): { catalog: Record<string, unknown> } {
  return {
    catalog: {
      openai: { kind: 'openai', upstream: 'https://api.openai.com', credentials: [{ name: 'none', none: true }] },
      anthropic: { kind: 'anthropic', upstream: 'https://api.anthropic.com', credentials: [{ name: 'none', none: true }] },
    },
  }
}
