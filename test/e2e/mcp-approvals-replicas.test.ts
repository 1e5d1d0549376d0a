/**
 * Human approval with two replicas: two modelgate servers, each behind its
 * own real Envoy, sharing one real redis-server as their quota store (as the
 * Helm chart's replicas do). An approval asked for through one replica is
 * listed and granted through the other, and the call it allows runs once,
 * whichever replica it reaches; a replay is refused. With Redis gone, the
 * approval API and calls that need an approval are refused, never let through
 * (the call meets the session store first: the same store, refused alike).
 */
import t from 'tap'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { refusal, textOf } from '../helpers/mcp.ts'
import { startRedis } from '../helpers/redis.ts'
import { startStack, type Stack } from '../helpers/stack.ts'

t.test('approvals shared by two replicas through Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const config = { quotas: { store: 'redis', redis: { url: redis.url, keyPrefix: 'e2e-approvals:' } } }
  const a = await startStack({ config })
  t.teardown(() => a.close())
  const b = await startStack({ config })
  t.teardown(() => b.close())

  const call = async (stack: Stack, args: Record<string, unknown>) => {
    const c = await stack.mcp('notebook')
    try {
      return await c.callTool({ name: 'delete_record', arguments: args })
    } finally {
      await c.close()
    }
  }
  const approvalOf = async (stack: Stack, args: Record<string, unknown>) => {
    const data = (await refusal(call(stack, args))).data as { code: string; approval_id: string }
    t.equal(data.code, 'MG_APPROVAL_REQUIRED')
    return data.approval_id
  }
  const toolCalls = () => [a, b].map((s) => s.mcpServer.calls.filter((c) => c.method === 'tools/call').length)

  t.test('asked through one replica, granted through the other, the call runs once whichever replica it reaches; a replay is refused', async (t) => {
    const id = await approvalOf(a, { id: '42' })

    const listed = await b.request('approver', { method: 'GET', path: '/modelgate/v1/approvals' })
    t.equal(listed.status, 200, listed.text())
    t.match((listed.json().approvals as Record<string, unknown>[]).find((r) => r.id === id), { state: 'pending', tool: 'mcp:tools/delete_record' }, 'the other replica lists it')
    const granted = await b.request('approver', { method: 'POST', path: `/modelgate/v1/approvals/${id}/grant` })
    t.equal(granted.status, 200, granted.text())
    t.equal(granted.json().state, 'granted')

    // The same call through both replicas at once: exactly one of them runs it.
    const both = await Promise.allSettled([call(a, { id: '42' }), call(b, { id: '42' })])
    const ran = both.filter((r) => r.status === 'fulfilled')
    t.equal(ran.length, 1, 'one call ran')
    t.equal(textOf((ran[0] as PromiseFulfilledResult<unknown>).value), 'deleted 42')
    const other = both.find((r) => r.status === 'rejected') as PromiseRejectedResult
    t.ok(other.reason instanceof McpError, 'the other was refused by modelgate')
    t.equal((other.reason as McpError).data && ((other.reason as McpError).data as { code: string }).code, 'MG_APPROVAL_REQUIRED')
    t.not(((other.reason as McpError).data as { approval_id: string }).approval_id, id, 'and asked for a new approval')
    t.same(toolCalls().reduce((x, y) => x + y), 1, 'one tools/call reached an MCP server in all')

    for (const stack of [a, b]) t.not(await approvalOf(stack, { id: '42' }), id, 'a replay through either replica needs a new approval')
    const again = await a.request('approver', { method: 'POST', path: `/modelgate/v1/approvals/${id}/grant` })
    t.equal(again.status, 404)
    t.equal(again.json().error.code, 'MG_APPROVAL_UNKNOWN', 'the used approval cannot be granted again through the replica that asked for it')
    t.same(toolCalls().reduce((x, y) => x + y), 1, 'still one')
  })

  t.test('with Redis gone, the approval API and a call that needs an approval are refused as unavailable (503, retry), and nothing reaches the server', async (t) => {
    const id = await approvalOf(a, { id: 'down' })
    const before = toolCalls()
    // Connected while Redis is up: the call itself meets the store that is gone.
    const client = await a.mcp('notebook')
    t.teardown(() => client.close())
    await redis.kill()
    const listed = await b.request('approver', { method: 'GET', path: '/modelgate/v1/approvals' })
    t.equal(listed.status, 503)
    t.equal(listed.json().error.code, 'MG_STATE_UNAVAILABLE')
    t.equal(listed.headers['retry-after'], '1', 'a refusal to retry')
    const grant = await b.request('approver', { method: 'POST', path: `/modelgate/v1/approvals/${id}/grant` })
    t.equal(grant.status, 503)
    t.equal(grant.json().error.code, 'MG_STATE_UNAVAILABLE')
    const e = await refusal(client.callTool({ name: 'delete_record', arguments: { id: 'down' } }))
    t.equal((e.data as { code: string }).code, 'MG_STATE_UNAVAILABLE')
    t.same(toolCalls(), before, 'no call went on')
    const refusedCall = (rs: { attributes: Record<string, unknown> }[]) => rs.some((r) => r.attributes['modelgate.denial.code'] === 'MG_STATE_UNAVAILABLE')
    t.ok(refusedCall(await a.auditRecords(refusedCall)), 'the refused call is in the audit trail')
  })
})
