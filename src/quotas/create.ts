/**
 * The state store the configuration asks for: this process's memory, or
 * Redis (connected here; an unreachable Redis does not stop start-up, the
 * requests meet it through `quotas.onStoreError`). The Redis client is loaded
 * only when configured: a process on the memory store does not carry it.
 */
import { resolveConfigPath, type Config } from '../config/config.ts'
import type { Logger } from '../log.ts'
import { MemoryStore } from './memory.ts'
import type { StateStore } from './store.ts'

export async function createStateStore(config: Config, logger: Logger): Promise<StateStore> {
  const q = config.quotas
  if (q.store === 'memory') return new MemoryStore()
  const { RedisStore, redisOptionsFromConfig } = await import('./redis.ts')
  const store = new RedisStore({ ...redisOptionsFromConfig(q.redis, (p) => resolveConfigPath(config, p)), logger })
  await store.connect()
  return store
}
