import t from 'tap'
import fc from 'fast-check'
import { jsToStruct, loadExtProcService, type CommonResponseMsg, type HeaderMutationMsg, type ProcessingResponseMsg } from '../../../src/server/codec.ts'
import { encodable, encodeProcessingResponse } from '../../../src/server/wire.ts'

const generic = loadExtProcService({ generic: true }).Process!
const served = loadExtProcService().Process!
const reference = (m: ProcessingResponseMsg) => generic.responseSerialize(m) as Buffer

const mutation: HeaderMutationMsg = {
  set_headers: [
    { header: { key: 'authorization', raw_value: Buffer.from('Bearer sk-test', 'latin1') }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    { header: { key: 'x-modelgate-note', raw_value: Buffer.from('caf\xe9', 'latin1') }, append_action: 'APPEND_IF_EXISTS_OR_ADD' },
  ],
  remove_headers: ['x-api-key', 'content-length'],
}
const metadata = jsToStruct({
  modelgate: { request_id: 'r-1', path: '/v1/chat/completions', model: 'gpt-4o-mini', error_code: undefined, n: 3, ratio: -0.5, ok: true, none: null, list: ['a', 1, false, { nested: 'ü' }] },
})

const cases: Record<string, ProcessingResponseMsg> = {
  'a bare headers answer': { request_headers: { response: {} } },
  'a headers answer without a common response': { response_headers: {} },
  'a headers answer with a header mutation and metadata': { request_headers: { response: { header_mutation: mutation } }, dynamic_metadata: metadata },
  'a body answer that replaces the body': { request_body: { response: { status: 'CONTINUE_AND_REPLACE', body_mutation: { body: Buffer.from('{"model":"m"}') }, header_mutation: { set_headers: [{ header: { key: 'content-length', raw_value: Buffer.from('13') }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }] } } }, dynamic_metadata: metadata },
  'a body answer that clears the body': { response_body: { response: { body_mutation: { clear_body: true } } } },
  'a body answer with an explicit CONTINUE and an empty body': { response_body: { response: { status: 'CONTINUE', body_mutation: { body: Buffer.alloc(0) } } } },
  'a response headers answer that switches to STREAMED': { response_headers: { response: {} }, mode_override: { response_body_mode: 'STREAMED' } },
  'trailers answers': { request_trailers: {} },
  'a trailers answer with a mutation': { response_trailers: { header_mutation: mutation } },
  'an immediate response': {
    immediate_response: { status: { code: 403 }, headers: mutation, body: Buffer.from('{"error":{"message":"denied","code":"MG_POLICY_DENIED"}}'), details: 'modelgate_MG_POLICY_DENIED' },
    dynamic_metadata: metadata,
  },
  'an immediate response with a large body': { immediate_response: { status: { code: 500 }, body: Buffer.alloc(70000, 0x61) } },
  'an empty struct': { request_headers: { response: {} }, dynamic_metadata: { fields: {} } },
}

t.test('the direct encoder writes every answer byte for byte as the generic serializer does', async (t) => {
  for (const [name, m] of Object.entries(cases)) {
    t.ok(encodable(m), `${name}: encodable`)
    t.same(encodeProcessingResponse(m), reference(m), name)
    t.same(served.responseSerialize(m), reference(m), `${name}: through the service definition`)
  }
})

t.test('the direct encoder agrees with the generic serializer on generated answers', async (t) => {
  const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a))
  const header = fc.record({
    header: fc.record({ key: fc.string({ maxLength: 40 }), raw_value: bytes }),
    append_action: fc.constantFrom('APPEND_IF_EXISTS_OR_ADD', 'ADD_IF_ABSENT', 'OVERWRITE_IF_EXISTS_OR_ADD', 'OVERWRITE_IF_EXISTS'),
  }) as fc.Arbitrary<NonNullable<HeaderMutationMsg['set_headers']>[number]>
  const hm: fc.Arbitrary<HeaderMutationMsg> = fc.record({ set_headers: fc.array(header, { maxLength: 4 }), remove_headers: fc.array(fc.string({ maxLength: 30 }), { maxLength: 3 }) }, { requiredKeys: [] })
  const common: fc.Arbitrary<CommonResponseMsg> = fc.record(
    {
      status: fc.constantFrom('CONTINUE' as const, 'CONTINUE_AND_REPLACE' as const),
      header_mutation: hm,
      body_mutation: fc.oneof(bytes.map((body) => ({ body })), fc.constant({ clear_body: true as const })),
    },
    { requiredKeys: [] },
  )
  const json = fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 }) as fc.Arbitrary<Record<string, unknown>>
  const answer: fc.Arbitrary<ProcessingResponseMsg> = fc.oneof(
    common.map((response) => ({ request_headers: { response } })),
    common.map((response) => ({ response_headers: { response }, mode_override: { response_body_mode: 'STREAMED' } })),
    common.map((response) => ({ request_body: { response } })),
    common.map((response) => ({ response_body: { response } })),
    hm.map((header_mutation) => ({ response_trailers: { header_mutation } })),
    fc.record({ code: fc.integer({ min: 100, max: 599 }), body: bytes, details: fc.string({ maxLength: 40 }), headers: hm }).map(({ code, body, details, headers }) => ({ immediate_response: { status: { code }, headers, body, details } })),
  )
  fc.assert(
    fc.property(answer, fc.option(json, { nil: undefined }), (m, meta) => {
      const withMeta: ProcessingResponseMsg = meta === undefined ? m : { ...m, dynamic_metadata: jsToStruct({ modelgate: meta }) }
      return encodeProcessingResponse(withMeta).equals(reference(withMeta))
    }),
    { numRuns: 500 },
  )
  t.pass('500 generated answers encode to the same bytes')
})

t.test('an answer with a field the direct encoder does not know goes to the generic serializer', async (t) => {
  const m = { request_headers: { response: {} }, override_message_timeout: { seconds: '5', nanos: 0 } } as ProcessingResponseMsg
  t.notOk(encodable(m))
  t.same(served.responseSerialize(m), reference(m))
})

t.test('an enum name the direct encoder does not know is an error, not a different answer', async (t) => {
  t.throws(() => encodeProcessingResponse({ response_headers: { response: {} }, mode_override: { response_body_mode: 'SOMETIMES' } }), { message: 'cannot encode response_body_mode "SOMETIMES"' })
  t.throws(() => encodeProcessingResponse({ request_body: { response: { status: 'MAYBE' as 'CONTINUE' } } }), { message: 'cannot encode status "MAYBE"' })
})
