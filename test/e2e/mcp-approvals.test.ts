/**
 * Human approval of MCP tool calls through a real Envoy: a permit annotated
 * @requires_approval refuses the first call with an approval id and the
 * reason; an approver (another identity policy lets approve the tool) lists
 * and grants it through modelgate's approval API; the same call then runs
 * once. A replay, a changed argument, an expired grant, a policy change in
 * between and a self-approval are each refused and audited.
 */
import t from 'tap'
import { appendFileSync, cpSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { refusal, textOf } from '../helpers/mcp.ts'
import { startStack, type AuditRecord } from '../helpers/stack.ts'
import { REPO_ROOT } from '../../src/dev/envoy.ts'
import { canonicalJson, sha256Hex } from '../../src/mcp/protocol.ts'
import type { PolicyStage } from '../../src/policy/stage.ts'

const TTL_SECONDS = 2

t.test('approvals through Envoy', async (t) => {
  const policies = mkdtempSync(join(tmpdir(), 'modelgate-approval-policies-'))
  cpSync(join(REPO_ROOT, 'policies'), policies, { recursive: true })
  const stack = await startStack({ config: { policy: { dir: policies }, mcp: { approvals: { ttlSeconds: TTL_SECONDS } } } })
  t.teardown(() => stack.close())
  const call = async (args: Record<string, unknown>) => {
    const c = await stack.mcp('notebook')
    try {
      return await c.callTool({ name: 'delete_record', arguments: args })
    } finally {
      await c.close()
    }
  }
  const approvalOf = async (args: Record<string, unknown>) => {
    const e = await refusal(call(args))
    const data = e.data as { code: string; approval_id: string; reason: string }
    t.equal(data.code, 'MG_APPROVAL_REQUIRED')
    return data.approval_id
  }
  const grant = (client: 'approver' | 'notebook' | 'checkout', id: string) => stack.request(client, { method: 'POST', path: `/modelgate/v1/approvals/${id}/grant` })

  t.test('an approver lists and grants; the exact call then runs once; replay, changed arguments and self-approval are refused', async (t) => {
    const id = await approvalOf({ id: '42' })
    t.equal(stack.mcpServer.calls.filter((c) => c.method === 'tools/call').length, 0, 'nothing reached the server')

    const listed = await stack.request('approver', { method: 'GET', path: '/modelgate/v1/approvals' })
    t.equal(listed.status, 200, listed.text())
    const pending = (listed.json().approvals as Record<string, unknown>[]).find((a) => a.id === id)!
    t.match(pending, {
      caller: 'spiffe://modelgate.local/ns/research/sa/notebook',
      tool: 'mcp:tools/delete_record',
      arguments_digest: sha256Hex(canonicalJson({ id: '42' })),
      reasons: ['a destructive tool: a person confirms this exact call'],
      state: 'pending',
    })
    t.notOk('arguments' in pending, 'the listing carries the digest, never the arguments')
    const notListed = await stack.request('checkout', { method: 'GET', path: '/modelgate/v1/approvals' })
    t.same(notListed.json().approvals, [], 'a caller policy does not let approve sees nothing to approve')

    const self = await grant('notebook', id)
    t.equal(self.status, 403)
    t.equal(self.json().error.code, 'MG_APPROVAL_SELF')
    const notAllowed = await grant('checkout', id)
    t.equal(notAllowed.status, 403)
    t.equal(notAllowed.json().error.code, 'MG_POLICY_DENIED')

    const ok = await grant('approver', id)
    t.equal(ok.status, 200, ok.text())
    t.equal(ok.json().state, 'granted')
    t.equal(ok.json().approver, 'spiffe://modelgate.local/ns/security/sa/approver')

    const changed = await approvalOf({ id: '43' })
    t.not(changed, id, 'one changed argument byte needs an approval of its own')
    t.equal(textOf(await call({ id: '42' })), 'deleted 42', 'the approved call runs')
    const replay = await approvalOf({ id: '42' })
    t.not(replay, id, 'a replay of the approved call needs a new approval')
    const again = await grant('approver', id)
    t.equal(again.status, 404)
    t.equal(again.json().error.code, 'MG_APPROVAL_UNKNOWN', 'a used approval cannot be granted again')
    t.equal(stack.mcpServer.calls.filter((c) => c.method === 'tools/call').length, 1, 'only the approved call reached the server')

    // Records are written as streams close: wait until the last request's is in.
    const expected = ['required', 'listed', 'refused_self', 'refused_policy', 'granted', 'used', 'replayed', 'refused_unknown']
    const outcomesOf = (rs: AuditRecord[]) => new Set(rs.map((r) => r.attributes['modelgate.approval.outcome']))
    const records = await stack.auditRecords((rs) => expected.every((o) => outcomesOf(rs).has(o)))
    const outcomes = outcomesOf(records)
    for (const o of expected) t.ok(outcomes.has(o), `the audit trail records ${o}`)
    const used = records.find((r) => r.attributes['modelgate.approval.outcome'] === 'used')!
    t.equal(used.attributes['modelgate.approval.id'], id)
    t.equal(used.attributes['modelgate.approval.approver'], 'spiffe://modelgate.local/ns/security/sa/approver')
    t.equal(used.attributes['modelgate.mcp.arguments_digest'], sha256Hex(canonicalJson({ id: '42' })))
  })

  t.test('an expired grant is refused', async (t) => {
    const id = await approvalOf({ id: 'expiring' })
    t.equal((await grant('approver', id)).status, 200)
    await new Promise((r) => setTimeout(r, TTL_SECONDS * 1000 + 300))
    const next = await approvalOf({ id: 'expiring' })
    t.not(next, id)
    const records = await stack.auditRecords((rs) => rs.some((r) => r.attributes['modelgate.approval.outcome'] === 'expired'))
    t.ok(records.some((r) => r.attributes['modelgate.approval.outcome'] === 'expired'), 'the audit trail records the expired grant')
  })

  t.test('a grant made under another policy set is refused', async (t) => {
    const id = await approvalOf({ id: 'policy' })
    t.equal((await grant('approver', id)).status, 200)
    appendFileSync(join(policies, 'limits.cedar'), '\n@id("late-addition")\n@owner("tests")\nforbid (principal, action, resource) when { context.tenant == "never-used" };\n')
    const engine = (stack.app!.pipeline.stages.find((s) => s.name === 'policy') as PolicyStage).engine
    t.ok((await engine.reload()).changed, 'the policy set changed')
    const next = await approvalOf({ id: 'policy' })
    t.not(next, id)
    const records = await stack.auditRecords((rs) => rs.some((r) => r.attributes['modelgate.approval.outcome'] === 'policy_changed'))
    t.ok(records.some((r) => r.attributes['modelgate.approval.outcome'] === 'policy_changed'), 'the audit trail records the grant refused for the policy change')
  })
})
