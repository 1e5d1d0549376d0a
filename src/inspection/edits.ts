/**
 * Edits to the request body that stages other than redaction ask for (the
 * provider stage's model alias rewrite). They are spans of the decoded body,
 * the same text the inspection's leaves point into, and redaction-apply, the
 * last stage to touch the body, applies them together with its own
 * placeholders in one rewrite; the server then sets the new content-length.
 */
import type { RequestContext } from '../pipeline/context.ts'
import type { Edit } from '../redaction/placeholders.ts'

const EDITS = Symbol('request.body-edits')

/** Replaces `[start, end)` of the decoded request body with `text` (already JSON-encoded where it must be). */
export function addRequestBodyEdit(ctx: RequestContext, edit: Edit): void {
  ctx.local<Edit[]>(EDITS, () => []).push(edit)
}

/** The edits asked for so far, in the order asked. */
export function requestBodyEdits(ctx: RequestContext): readonly Edit[] {
  return ctx.local<Edit[]>(EDITS, () => [])
}
