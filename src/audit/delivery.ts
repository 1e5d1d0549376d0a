/**
 * Getting every ended span somewhere durable. The audit stage hands each
 * record over as it ends (`add`); as a span processor it takes SDK spans too.
 * Records queue as records and become spans only when a batch is exported.
 *
 *   span ends ──► file sink (JSON lines), if configured
 *            └──► memory queue ──batch──► OTLP exporter ──ok──► done
 *                                              │ failed or too slow
 *                                              ▼
 *                                       on-disk spool ──retry with backoff──► OTLP exporter
 *
 * While the spool holds anything, new spans join it (oldest records go first
 * once the collector answers again). The memory queue is bounded: past
 * `maxQueue` spans it spills to the spool even while an export is in flight,
 * so a slow collector costs disk, not memory. Spans are only lost when the
 * spool is past its hard limit (counted, logged, and visible as a gap in the
 * hash chain) or if the process dies before a batch was sent or spooled
 * (at most one batch interval).
 */
import type { Context } from '@opentelemetry/api'
import { ExportResultCode, type InstrumentationScope } from '@opentelemetry/core'
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources'
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace'
import type { Logger } from '../log.ts'
import type { FileSink } from './file-sink.ts'
import { recordToSpan, spanToRecord, type SpanRecord } from './record.ts'
import type { Spool } from './spool.ts'

export interface DeliveryOptions {
  /** The OTLP exporter, or undefined when records only go to the file. */
  readonly exporter: SpanExporter | undefined
  /** Required with an exporter. */
  readonly spool: Spool | undefined
  readonly file: FileSink | undefined
  /** The resource and scope records of this process are exported with. */
  readonly resource: Resource
  readonly scope: InstrumentationScope
  readonly delayMs: number
  readonly maxBatch: number
  readonly maxQueue: number
  readonly retryInitialMs: number
  readonly retryMaxMs: number
  /** The exporter's own timeout; an export that has not answered a second after it counts as failed. */
  readonly exportTimeoutMs: number
  readonly logger: Logger
  readonly onExportFailure?: () => void
  readonly onDropped?: (count: number) => void
}

export interface DeliveryStats {
  /** Spans in memory, not yet sent. */
  readonly queued: number
  /** Spans in the export now in flight. */
  readonly inFlight: number
  readonly spoolBytes: number
  readonly spoolSegments: number
  /** True after a failed export, until one succeeds. */
  readonly collectorDown: boolean
  readonly exported: number
  readonly spooled: number
  readonly dropped: number
  readonly exportFailures: number
}

export class AuditDelivery implements SpanProcessor {
  readonly #o: DeliveryOptions
  /** Records waiting for the exporter: kept as records, made spans only when a batch goes out. */
  #queue: SpanRecord[] = []
  #inFlight = 0
  #timer: NodeJS.Timeout | undefined
  #timerAt = 0
  #pumping: Promise<void> | undefined
  #again = false
  #spillScheduled = false
  #down = false
  #retryAt = 0
  #backoff: number
  #closing = false
  #shutdown: Promise<void> | undefined
  #exported = 0
  #spooled = 0
  #dropped = 0
  #failures = 0

  constructor(opts: DeliveryOptions) {
    if (opts.exporter && !opts.spool) throw new Error('an OTLP exporter needs a spool')
    this.#o = opts
    this.#backoff = opts.retryInitialMs
    // Records an earlier process left in the spool go out as soon as possible.
    if (opts.spool && !opts.spool.empty) this.#schedule(0)
  }

  /**
   * True when a new record can be kept: the spool is not full and the file
   * sink (if any) is writable. In `deny` mode a false here refuses the request.
   */
  accepting(): boolean {
    if (this.#o.spool?.full) return false
    if (this.#o.file && !this.#o.file.available) return false
    return true
  }

  stats(): DeliveryStats {
    return {
      queued: this.#queue.length,
      inFlight: this.#inFlight,
      spoolBytes: this.#o.spool?.bytes ?? 0,
      spoolSegments: this.#o.spool?.segments ?? 0,
      collectorDown: this.#down,
      exported: this.#exported,
      spooled: this.#spooled,
      dropped: this.#dropped + (this.#o.file?.dropped ?? 0),
      exportFailures: this.#failures,
    }
  }

  // ---- SpanProcessor ------------------------------------------------------------

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    this.add(spanToRecord(span))
  }

  /**
   * Delivers one ended span given as its record (what the audit stage builds):
   * to the file now, to the exporter with the next batch. The record must not
   * change afterwards.
   */
  add(record: SpanRecord): void {
    this.#o.file?.write(record)
    if (!this.#o.exporter) return
    if (this.#closing) {
      // Late records during shutdown go straight to disk.
      this.#spill([record])
      return
    }
    this.#queue.push(record)
    if (this.#queue.length > this.#o.maxQueue) this.#scheduleSpill()
    this.#schedule(this.#queue.length >= this.#o.maxBatch ? 0 : this.#o.delayMs)
  }

  /** Sends what is queued now (or spools it if the collector is down). */
  async forceFlush(): Promise<void> {
    if (this.#o.exporter) {
      await this.#pump()
      // A pump that was already running may have left newer spans behind.
      if (this.#queue.length > 0) await this.#pump()
    }
    await this.#o.file?.flush()
  }

  /**
   * Flushes (sending if the collector answers, else spooling), closes the
   * spool and the file. Nothing queued is lost: what cannot be sent waits in
   * the spool for the next process.
   */
  shutdown(): Promise<void> {
    this.#shutdown ??= (async () => {
      if (this.#o.exporter) {
        await this.#pumping
        if (!this.#down) await this.#pump()
        this.#closing = true
        clearTimeout(this.#timer)
        this.#timer = undefined
        await this.#pumping
        this.#spill(this.#queue.splice(0))
        this.#o.spool?.close()
        try {
          await this.#o.exporter.shutdown()
        } catch (err) {
          this.#o.logger.warn('audit exporter shutdown failed', { error: (err as Error).message })
        }
      }
      await this.#o.file?.close()
    })()
    return this.#shutdown
  }

  // ---- the pump -------------------------------------------------------------------

  #schedule(ms: number): void {
    if (this.#closing) return
    const at = Date.now() + ms
    if (this.#timer && this.#timerAt <= at) return
    clearTimeout(this.#timer)
    this.#timerAt = at
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      void this.#pump()
    }, ms)
    this.#timer.unref()
  }

  #scheduleSpill(): void {
    if (this.#spillScheduled) return
    this.#spillScheduled = true
    setImmediate(() => {
      this.#spillScheduled = false
      // Keep one batch in memory for the next export; the older rest goes to disk.
      const excess = this.#queue.length - this.#o.maxBatch
      if (excess > 0 && this.#queue.length > this.#o.maxQueue) this.#spill(this.#queue.splice(0, excess))
    })
  }

  #pump(): Promise<void> {
    if (this.#pumping) {
      this.#again = true
      return this.#pumping
    }
    this.#pumping = (async () => {
      try {
        do {
          this.#again = false
          await this.#rounds()
        } while (this.#again && !this.#closing)
      } catch (err) {
        this.#o.logger.error('audit delivery failed', { error: (err as Error).message })
      } finally {
        this.#pumping = undefined
        this.#reschedule()
      }
    })()
    return this.#pumping
  }

  async #rounds(): Promise<void> {
    const spool = this.#o.spool!
    // Bounded: each round sends or spools at least one batch, or stops.
    for (let round = 0; round < 10000; round++) {
      if (!spool.empty) {
        if (Date.now() < this.#retryAt) {
          // The collector was down a moment ago: new records join the backlog on disk.
          this.#spill(this.#queue.splice(0))
          return
        }
        const seg = spool.oldest()
        if (!seg) return
        if (seg.unreadable > 0) this.#o.logger.warn('audit spool segment had unreadable lines', { segment: seg.name, lines: seg.unreadable })
        if (seg.records.length === 0) {
          spool.remove(seg.name)
          continue
        }
        const resource: Resource = resourceFromAttributes(seg.header?.resource ?? {})
        const scope = seg.header?.scope ?? this.#o.scope
        const spans = seg.records.map((r) => recordToSpan(r, resource, scope))
        if (await this.#export(spans)) {
          spool.remove(seg.name)
          this.#up()
          continue
        }
        this.#fail()
        this.#spill(this.#queue.splice(0))
        return
      }
      if (this.#queue.length === 0) return
      const batch = this.#queue.splice(0, this.#o.maxBatch)
      if (await this.#export(batch.map((r) => recordToSpan(r, this.#o.resource, this.#o.scope)))) {
        this.#up()
        continue
      }
      this.#fail()
      this.#spill(batch)
      this.#spill(this.#queue.splice(0))
      return
    }
  }

  #reschedule(): void {
    if (this.#closing) return
    if (this.#o.spool && !this.#o.spool.empty) this.#schedule(Math.max(0, this.#retryAt - Date.now()))
    else if (this.#queue.length > 0) this.#schedule(this.#queue.length >= this.#o.maxBatch ? 0 : this.#o.delayMs)
  }

  #export(spans: ReadableSpan[]): Promise<boolean> {
    const exporter = this.#o.exporter!
    this.#inFlight = spans.length
    return new Promise<boolean>((resolve) => {
      let settled = false
      const finish = (ok: boolean) => {
        if (settled) return
        settled = true
        clearTimeout(guard)
        this.#inFlight = 0
        if (ok) this.#exported += spans.length
        resolve(ok)
      }
      // An exporter that never calls back must not stall the trail. Not unref'd: a flush waits for it.
      const guard = setTimeout(() => finish(false), this.#o.exportTimeoutMs + 1000)
      try {
        exporter.export(spans, (result) => {
          if (result.code !== ExportResultCode.SUCCESS && !this.#down) {
            this.#o.logger.warn('audit export failed; records go to the spool', { error: result.error?.message })
          }
          finish(result.code === ExportResultCode.SUCCESS)
        })
      } catch (err) {
        this.#o.logger.warn('audit export threw', { error: (err as Error).message })
        finish(false)
      }
    })
  }

  #spill(records: readonly SpanRecord[]): void {
    if (records.length === 0) return
    const spool = this.#o.spool!
    let written = 0
    try {
      written = spool.append(records)
    } catch (err) {
      this.#o.logger.error('audit spool cannot be written', { dir: spool.dir, error: (err as Error).message })
    }
    this.#spooled += written
    const lost = records.length - written
    if (lost > 0) {
      this.#dropped += lost
      this.#o.onDropped?.(lost)
      this.#o.logger.error('audit records dropped: the spool is past its hard limit', { dropped: lost, spool_bytes: spool.bytes })
    }
  }

  #fail(): void {
    this.#failures++
    this.#o.onExportFailure?.()
    if (!this.#down) this.#o.logger.warn('audit collector unreachable; spooling records', { retry_in_ms: this.#backoff })
    this.#down = true
    this.#retryAt = Date.now() + this.#backoff
    this.#backoff = Math.min(this.#backoff * 2, this.#o.retryMaxMs)
  }

  #up(): void {
    if (this.#down) this.#o.logger.info('audit collector reachable again', { spool_bytes: this.#o.spool?.bytes ?? 0 })
    this.#down = false
    this.#retryAt = 0
    this.#backoff = this.#o.retryInitialMs
  }
}
