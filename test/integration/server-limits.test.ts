/**
 * Size limits on the real server: bodies up to server.maxBodyBytes pass, larger
 * ones are refused with 413, and gRPC messages far beyond the limit are refused
 * by the transport itself. The gRPC limit is raised above grpc-js' 4 MiB default.
 */
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { startApp } from '../../src/app.ts'
import { configFromObject } from '../../src/config/config.ts'
import { createCa, issueCertificate } from '../../src/dev/pki.ts'
import { silentLogger } from '../../src/log.ts'
import type { Stage, StreamOutcome } from '../../src/pipeline/stage.ts'
import { answerKind, connectExtProc, denialJson, msg, mtlsAttributes } from '../helpers/grpc-client.ts'
import { permitAllPolicyDir } from '../helpers/policies.ts'
import { keylessCatalog } from '../helpers/providers.ts'

const TD = 'example.org'
const CHECKOUT = `spiffe://${TD}/ns/payments/sa/checkout`
const dir = t.testdir()
const ca = await createCa(dir, 'ca')
const ATTRS = mtlsAttributes(readFileSync((await issueCertificate(dir, ca, { name: 'checkout', uris: [CHECKOUT] })).cert, 'utf8'), CHECKOUT)
const headers = (id: string, extra: Record<string, string> = {}) => ({ ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json', 'x-request-id': id, ...extra })

/** A valid chat body of exactly `size` bytes. */
function chatBody(size: number): Buffer {
  const shell = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: '' }] })
  if (size < shell.length) throw new Error('too small')
  const body = Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x'.repeat(size - shell.length) }] }))
  if (body.length !== size) throw new Error(`built ${body.length} bytes, wanted ${size}`)
  return body
}

async function start(maxBodyBytes: number) {
  const closed = new Map<string, StreamOutcome[]>()
  const probe: Stage = { name: 'probe', close: (ctx, o) => void closed.set(ctx.id, [...(closed.get(ctx.id) ?? []), o]) }
  const config = configFromObject(
    { server: { listen: '127.0.0.1:0', maxBodyBytes, drainTimeoutMs: 2000 }, identity: { trustDomains: [TD] }, providers: keylessCatalog(), audit: { enabled: false }, redaction: { enabled: false }, policy: { dir: permitAllPolicyDir(), watch: false } },
    'limits.test',
  )
  const app = await startApp({ config, logger: silentLogger, extraStages: { last: [probe] } })
  const client = connectExtProc(app.address, { maxMessageBytes: 64 * 1024 * 1024 })
  t.teardown(async () => {
    client.close()
    await app.shutdown()
  })
  return { app, client, closed }
}

const SMALL = 64 * 1024

t.test('with maxBodyBytes 64 KiB', async (t) => {
  const { client, closed } = await start(SMALL)

  t.test('a body of exactly maxBodyBytes is inspected and forwarded', async (t) => {
    const s = client.open()
    await s.exchange(msg.requestHeaders(headers('exact'), { attributes: ATTRS }))
    const r = await s.exchange(msg.requestBody(chatBody(SMALL)))
    t.equal(answerKind(r), 'request_body')
    t.notOk(r.request_body?.response?.body_mutation)
    await s.end()
  })

  t.test('one byte more is refused with 413', async (t) => {
    const s = client.open()
    await s.exchange(msg.requestHeaders(headers('over'), { attributes: ATTRS }))
    const r = await s.exchange(msg.requestBody(chatBody(SMALL + 1)))
    t.equal(r.immediate_response?.status.code, 413)
    t.equal(denialJson(r).error.code, 'MG_BODY_TOO_LARGE')
    t.same(await s.end(), { code: 0, details: 'OK' })
  })

  t.test('a small compressed body that decodes beyond maxBodyBytes is refused with 413', async (t) => {
    const s = client.open()
    await s.exchange(msg.requestHeaders(headers('bomb', { 'content-encoding': 'gzip' }), { attributes: ATTRS }))
    const r = await s.exchange(msg.requestBody(gzipSync(chatBody(4 * SMALL))))
    t.equal(r.immediate_response?.status.code, 413)
    t.equal(denialJson(r).error.code, 'MG_BODY_TOO_LARGE')
    await s.end()
  })

  t.test('a message far beyond the limit is refused by gRPC itself, never answered with a continue', async (t) => {
    const s = client.open()
    await s.exchange(msg.requestHeaders(headers('huge'), { attributes: ATTRS }))
    s.send(msg.requestBody(Buffer.alloc(SMALL + 512 * 1024, 0x20)))
    const end = await s.ended
    t.equal(end.code, grpc.status.RESOURCE_EXHAUSTED, `status ${grpc.status[end.code]}: ${end.details}`)
    t.same(s.received.map(answerKind), ['request_headers'], 'nothing answers the oversized body')
    for (let i = 0; i < 100 && !closed.has('huge'); i++) await new Promise((r) => setTimeout(r, 10))
    t.equal(closed.get('huge')?.length, 1, 'the request is closed once')
    t.not(closed.get('huge')?.[0]?.kind, 'completed')
  })
})

t.test('with maxBodyBytes 8 MiB, bodies beyond gRPC\'s 4 MiB default pass both ways', async (t) => {
  const { client } = await start(8 * 1024 * 1024)
  const body = chatBody(6 * 1024 * 1024)
  const s = client.open()
  await s.exchange(msg.requestHeaders(headers('large', { 'content-encoding': 'gzip' }), { attributes: ATTRS }))
  const r = await s.exchange(msg.requestBody(gzipSync(body)))
  t.equal(answerKind(r), 'request_body')
  const mutation = r.request_body?.response?.body_mutation as { body?: Buffer } | undefined
  t.equal(mutation?.body?.length, body.length, 'the decoded 6 MiB body is sent back to Envoy in one message')
  t.same(await s.end(), { code: 0, details: 'OK' })
})
