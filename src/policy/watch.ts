/**
 * Watches policy directories and calls back (debounced) when something in them
 * may have changed. It watches each directory itself, not the files: editors
 * replace files by rename, and Kubernetes updates a mounted ConfigMap by
 * writing a new hidden `..<timestamp>` directory and atomically renaming the
 * `..data` symlink over the old one, so only directory events see every
 * change. A slow poll backs the watchers up (network filesystems, missed
 * events, a directory that was replaced); the callback re-reads and compares
 * content hashes, so spurious calls cost one read.
 */
import { watch, type FSWatcher } from 'node:fs'
import type { Logger } from '../log.ts'

export interface DirectoryWatcher {
  close(): void
}

export interface WatchOptions {
  /** Quiet time after the last event before the callback runs. */
  readonly debounceMs: number
  /** Calls the callback this often regardless of events (0: never). */
  readonly pollIntervalMs: number
  readonly logger: Logger
}

export function watchDirectories(dirs: readonly string[], onChange: () => void, opts: WatchOptions): DirectoryWatcher {
  let closed = false
  let timer: NodeJS.Timeout | undefined
  const watchers = new Map<string, FSWatcher>()

  const fire = () => {
    if (closed) return
    if (timer) clearTimeout(timer)
    timer = setTimeout(() => {
      timer = undefined
      if (!closed) onChange()
    }, opts.debounceMs)
    timer.unref()
  }

  const start = (dir: string) => {
    if (closed || watchers.has(dir)) return
    try {
      const w = watch(dir, { persistent: false }, () => fire())
      w.on('error', (err) => {
        opts.logger.warn('policy directory watch failed; relying on polling until it can be watched again', { dir, error: err.message })
        w.close()
        watchers.delete(dir)
      })
      watchers.set(dir, w)
    } catch (err) {
      opts.logger.warn('cannot watch policy directory; relying on polling', { dir, error: (err as Error).message })
    }
  }

  for (const d of dirs) start(d)
  const poll =
    opts.pollIntervalMs > 0
      ? setInterval(() => {
          for (const d of dirs) start(d)
          fire()
        }, opts.pollIntervalMs)
      : undefined
  poll?.unref()

  return {
    close() {
      closed = true
      if (timer) clearTimeout(timer)
      if (poll) clearInterval(poll)
      for (const w of watchers.values()) w.close()
      watchers.clear()
    },
  }
}
