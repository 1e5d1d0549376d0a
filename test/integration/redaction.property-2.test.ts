/** The redaction promise, end to end: shard 2 of 2 of the property test (see redaction-property.ts). */
import { runShard } from './redaction-property.ts'

await runShard(1)
