/**
 * A caller's teams, as the policy set's entities.json declares them: the
 * `Team` ancestors of its `Workload` entity and of its `Namespace`. Looked up
 * in the active policy set, so a reload that moves a workload to another team
 * moves its credential too; answers are kept per policy set.
 */
import { LRUCache } from 'lru-cache'
import { uidKey, type StaticEntities } from '../policy/load.ts'
import { ENTITY } from '../policy/names.ts'

const TEAM_PREFIX = `${ENTITY.Team}::`

export function teamsIn(entities: StaticEntities, spiffeId: string, namespace: string | undefined): ReadonlySet<string> {
  const teams = new Set<string>()
  const starts = [uidKey({ type: ENTITY.Workload, id: spiffeId }), ...(namespace ? [uidKey({ type: ENTITY.Namespace, id: namespace })] : [])]
  for (const key of starts) {
    for (const a of entities.ancestors.get(key) ?? []) if (a.startsWith(TEAM_PREFIX)) teams.add(JSON.parse(a.slice(TEAM_PREFIX.length)) as string)
  }
  return teams
}

/** `teamsIn` over whatever policy set is active, cached per set and caller. */
export function teamLookup(active: () => { readonly hash: string; readonly entities: StaticEntities }, max = 10_000): (spiffeId: string, namespace: string | undefined) => ReadonlySet<string> {
  const cache = new LRUCache<string, ReadonlySet<string>>({ max })
  return (spiffeId, namespace) => {
    const set = active()
    const key = `${set.hash}\n${spiffeId}`
    let teams = cache.get(key)
    if (!teams) {
      teams = teamsIn(set.entities, spiffeId, namespace)
      cache.set(key, teams)
    }
    return teams
  }
}
