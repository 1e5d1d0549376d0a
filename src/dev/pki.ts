/**
 * A throwaway development PKI: a CA and X.509-SVIDs for local workloads,
 * created with the openssl command-line tool. For `modelgate start` and tests
 * only; production SVIDs come from SPIRE or the mesh.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface KeyPair {
  readonly cert: string
  readonly key: string
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 })
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    throw new Error(`openssl ${args[0]} failed: ${(e.stderr || e.message).trim()}`)
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes']

/** A self-signed CA certificate and key, `<name>.pem` / `<name>.key` in dir. */
export async function createCa(dir: string, name: string, commonName = `modelgate dev CA (${name})`): Promise<KeyPair> {
  await mkdir(dir, { recursive: true })
  const pair = { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) }
  await openssl([
    'req', '-x509', ...EC, '-keyout', pair.key, '-out', pair.cert, '-days', '30', '-subj', `/O=modelgate dev/CN=${commonName}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ])
  return pair
}

export interface LeafOptions {
  readonly name: string
  readonly commonName?: string
  /** URI SANs (an X.509-SVID has exactly one spiffe:// URI). */
  readonly uris?: readonly string[]
  readonly dns?: readonly string[]
  readonly ips?: readonly string[]
  /** Issue a CA certificate instead of a leaf (for tests of that mistake). */
  readonly isCA?: boolean
  /**
   * OpenSSL extension lines that replace the default basicConstraints and
   * keyUsage lines (for tests of certificates that are not proper leaves),
   * e.g. `['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyCertSign']`;
   * an empty list leaves both extensions out.
   */
  readonly extensions?: readonly string[]
}

/** A leaf certificate signed by `ca`: `<name>.pem` / `<name>.key` in dir. */
export async function issueCertificate(dir: string, ca: KeyPair, opts: LeafOptions): Promise<KeyPair> {
  await mkdir(dir, { recursive: true })
  const pair = { cert: join(dir, `${opts.name}.pem`), key: join(dir, `${opts.name}.key`) }
  const csr = join(dir, `${opts.name}.csr`)
  const ext = join(dir, `${opts.name}.ext`)
  const sans = [...(opts.uris ?? []).map((u) => `URI:${u}`), ...(opts.dns ?? []).map((d) => `DNS:${d}`), ...(opts.ips ?? []).map((i) => `IP:${i}`)]
  const lines = opts.extensions
    ? [...opts.extensions, 'extendedKeyUsage=clientAuth,serverAuth']
    : opts.isCA
      ? ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature']
      : ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=clientAuth,serverAuth']
  if (sans.length) lines.push(`subjectAltName=${sans.join(',')}`)
  await writeFile(ext, lines.join('\n') + '\n')
  await openssl(['req', '-new', ...EC, '-keyout', pair.key, '-out', csr, '-subj', `/O=modelgate dev/CN=${opts.commonName ?? opts.name}`])
  await openssl([
    'x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', '0x' + randomBytes(12).toString('hex'),
    '-days', '30', '-sha256', '-extfile', ext, '-out', pair.cert,
  ])
  await rm(csr, { force: true })
  await rm(ext, { force: true })
  return pair
}
