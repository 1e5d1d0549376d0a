/**
 * Content-encoding for request and response bodies (the provider stage decodes
 * requests with the same parser and decoder). A compressed body is decoded
 * before it is scanned and leaves modelgate identity-encoded (the stage removes
 * the content-encoding header). An encoding modelgate cannot decode is refused:
 * a body that cannot be read is never forwarded unscanned.
 */
import zlib from 'node:zlib'

export type Coding = 'gzip' | 'deflate' | 'br'

/** The content-codings modelgate decodes, in requests and responses alike (as named in headers). */
export const SUPPORTED_CODINGS: readonly string[] = ['gzip', 'x-gzip', 'deflate', 'br', 'identity']

/**
 * Most codings one body may stack. Each is undone with its own output bound;
 * a header listing hundreds would make one body cost hundreds of decodes.
 */
export const MAX_STACKED_CODINGS = 4

/**
 * The codings of a Content-Encoding header in the order they were applied
 * (identity dropped), or undefined when one of them is not supported or more
 * than MAX_STACKED_CODINGS are stacked.
 */
export function parseContentEncoding(header: string | undefined): Coding[] | undefined {
  if (!header) return []
  const out: Coding[] = []
  for (const part of header.split(',')) {
    const c = part.trim().toLowerCase()
    if (c === '' || c === 'identity') continue
    if (c === 'gzip' || c === 'x-gzip') out.push('gzip')
    else if (c === 'deflate') out.push('deflate')
    else if (c === 'br') out.push('br')
    else return undefined
    if (out.length > MAX_STACKED_CODINGS) return undefined
  }
  return out
}

export class DecodeError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'DecodeError'
  }
}

/** Decodes a whole body (codings undone last-first), refusing output beyond `maxBytes`. */
export function decodeBuffered(data: Buffer, codings: readonly Coding[], maxBytes: number): Buffer {
  let buf = data
  for (let i = codings.length - 1; i >= 0; i--) {
    const opts = { maxOutputLength: maxBytes }
    try {
      switch (codings[i]!) {
        case 'gzip':
          buf = zlib.gunzipSync(buf, opts)
          break
        case 'br':
          buf = zlib.brotliDecompressSync(buf, opts)
          break
        case 'deflate':
          // RFC 9110 "deflate" is zlib-wrapped; some servers send raw deflate.
          try {
            buf = zlib.inflateSync(buf, opts)
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw err
            buf = zlib.inflateRawSync(buf, opts)
          }
          break
      }
    } catch (err) {
      throw new DecodeError(`cannot decode ${codings[i]} body: ${(err as Error).message}`, { cause: err })
    }
  }
  return buf
}

type Decompressor = zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress

/**
 * Incremental decoder for streamed (SSE) bodies: each push returns every byte
 * the input so far decodes to (a sync flush after each chunk).
 */
export class StreamDecoder {
  readonly #stages: Decompressor[]
  readonly #maxBytes: number
  #total = 0

  constructor(codings: readonly Coding[], maxBytes: number) {
    this.#stages = [...codings].reverse().map((c) => (c === 'gzip' ? zlib.createGunzip() : c === 'br' ? zlib.createBrotliDecompress() : zlib.createInflate()))
    this.#maxBytes = maxBytes
  }

  async push(chunk: Buffer, end: boolean): Promise<Buffer> {
    let data = chunk
    for (const z of this.#stages) data = await step(z, data, end)
    this.#total += data.length
    if (this.#total > this.#maxBytes) throw new DecodeError(`decoded stream exceeds ${this.#maxBytes} bytes`)
    return data
  }

  /** Releases the decompressors (when the stream ends early). */
  destroy(): void {
    for (const z of this.#stages) z.destroy()
  }
}

function step(z: Decompressor, input: Buffer, end: boolean): Promise<Buffer> {
  const out: Buffer[] = []
  const onData = (b: Buffer) => out.push(b)
  z.on('data', onData)
  return new Promise<Buffer>((resolve, reject) => {
    const done = () => {
      z.off('data', onData)
      z.off('error', onErr)
      resolve(Buffer.concat(out))
    }
    const onErr = (e: Error) => {
      z.off('data', onData)
      reject(new DecodeError(`cannot decode stream: ${e.message}`, { cause: e }))
    }
    z.once('error', onErr)
    if (input.length) z.write(input)
    if (end) {
      z.once('end', done)
      z.end()
    } else z.flush(done)
  })
}
