/** The configuration a command runs with. */
import { ConfigError, loadConfigFile, type Config } from '../config/config.ts'
import type { CliIO } from './io.ts'

/** Loads and validates a configuration file; every problem it has goes to stderr and the command exits 1. */
export function loadCommandConfig(file: string, io: CliIO): Config | 1 {
  try {
    return loadConfigFile(file)
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr.write(err.message + '\n')
      return 1
    }
    throw err
  }
}
