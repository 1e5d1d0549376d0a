import t from 'tap'
import { SERVE_ENV, SERVE_NODE_OPTIONS } from '../../../src/dev/process.ts'
import { imageLaunch } from '../../helpers/image.ts'

t.test('modelgate start runs modelgate serve with the container image’s node flags and memory settings', async (t) => {
  const image = imageLaunch()
  t.same([...SERVE_NODE_OPTIONS].sort(), [...image.nodeFlags].sort(), 'the node flags of the image’s entrypoint')
  for (const [k, v] of Object.entries(SERVE_ENV)) t.equal(image.env[k], v, `${k} as the image sets it`)
})
