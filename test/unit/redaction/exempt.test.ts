import t from 'tap'
import { binaryPayloadKind, isEnumeratedValue } from '../../../src/redaction/exempt.ts'

const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(40, 7)])
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(40, 1)])
const WAV = Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4, 0), Buffer.from('WAVEfmt '), Buffer.alloc(30, 3)])

t.test('an enumerated field is exempt only with one of its own values', async (t) => {
  t.ok(isEnumeratedValue('role', 'user'))
  t.ok(isEnumeratedValue('type', 'response.output_text.delta'))
  t.notOk(isEnumeratedValue('role', 'ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2'), 'any other value of the field is scanned')
  t.notOk(isEnumeratedValue('model', 'gpt-4o'), 'free-form fields are never enumerated')
  t.notOk(isEnumeratedValue('constructor', 'x'), 'inherited names are not fields')
  t.notOk(isEnumeratedValue(3, 'user'), 'array positions are not fields')
})

t.test('a base64 payload is exempt only when it decodes to an image or audio signature', async (t) => {
  t.equal(binaryPayloadKind(`data:image/png;base64,${PNG.toString('base64')}`), 'image/png')
  t.equal(binaryPayloadKind(JPEG.toString('base64')), 'image/jpeg', 'bare base64 is identified by its bytes')
  t.equal(binaryPayloadKind(`data:audio/wav;base64,${WAV.toString('base64')}`), 'audio/wav')
  const text = Buffer.from('my token is ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2').toString('base64')
  t.equal(binaryPayloadKind(`data:image/png;base64,${text}`), undefined, 'a declared image type proves nothing')
  t.equal(binaryPayloadKind(`data:;base64, my token is ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2`), undefined)
  t.equal(binaryPayloadKind(`data:image/png;base64,${PNG.toString('base64')} and ghp_Zq8Xw2Lk9Vb4Nm7Tr3Yp6Hs1Jd5Fg0Ca8Ue2`), undefined, 'text after the payload')
  t.equal(binaryPayloadKind(PNG.toString('base64').slice(0, -2)), undefined, 'a truncated payload is not valid base64')
  t.equal(binaryPayloadKind('data:text/plain;base64,' + text), undefined)
})
