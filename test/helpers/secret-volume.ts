/**
 * A directory laid out the way the kubelet writes a Secret volume, and the
 * swap it makes when the Secret changes: each version in a timestamped
 * directory, `..data` a symlink to the current one, and every key a symlink
 * through `..data`. An update writes the new version beside the old one,
 * points `..data_tmp` at it and renames that over `..data` (one atomic
 * rename), then removes the old version.
 */
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export class SecretVolume {
  readonly dir: string
  #current: string | undefined
  #n = 0

  constructor(dir: string, files: Record<string, string>) {
    this.dir = dir
    mkdirSync(dir, { recursive: true })
    this.#write(files)
    for (const key of Object.keys(files)) symlinkSync(join('..data', key), join(dir, key))
  }

  /** The path of a key, as a pod reads it. */
  path(key: string): string {
    return join(this.dir, key)
  }

  /** The kubelet's update: a new version directory, then `..data` swapped by one rename. */
  update(files: Record<string, string>): void {
    const old = this.#current
    this.#write(files)
    if (old) rmSync(join(this.dir, old), { recursive: true, force: true })
  }

  #write(files: Record<string, string>): void {
    const version = `..2025_01_01_00_00_${String(this.#n++).padStart(2, '0')}.${process.pid}`
    mkdirSync(join(this.dir, version))
    for (const [key, value] of Object.entries(files)) writeFileSync(join(this.dir, version, key), value, { mode: 0o440 })
    rmSync(join(this.dir, '..data_tmp'), { force: true })
    symlinkSync(version, join(this.dir, '..data_tmp'))
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'))
    this.#current = version
  }
}
