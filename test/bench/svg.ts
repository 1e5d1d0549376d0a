/**
 * A latency chart as a self-contained SVG (no scripts, no fonts to fetch):
 * one group per benchmark case, one bar per configuration up to its p50, a
 * whisker from p50 to p99 with a tick at p90, on a logarithmic axis.
 */

export interface LatencyPoint {
  readonly p50: number
  readonly p90: number
  readonly p99: number
}

const COLORS: Record<string, string> = { none: '#8c8c8c', noop: '#4c78a8', full: '#e45756' }
const LABELS: Record<string, string> = { none: 'Envoy, no ext_proc', noop: 'no-op ext_proc', full: 'modelgate' }

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

export function latencyChart(cases: readonly string[], configs: readonly string[], get: (caseId: string, config: string) => LatencyPoint | undefined): string {
  const bar = 14
  const gap = 4
  const groupGap = 26
  const groupWidth = configs.length * (bar + gap) - gap
  const left = 64
  const top = 44
  const plotHeight = 300
  const bottom = 110
  const width = Math.max(left + configs.length * 150, left + cases.length * (groupWidth + groupGap) + 20)
  const height = top + plotHeight + bottom

  const values = cases.flatMap((c) => configs.map((cfg) => get(c, cfg))).filter((p): p is LatencyPoint => p !== undefined)
  const lo = Math.pow(10, Math.floor(Math.log10(Math.max(0.01, Math.min(...values.map((v) => v.p50), 1)))))
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...values.map((v) => v.p99), lo * 10))))
  const y = (ms: number) => top + plotHeight - ((Math.log10(Math.max(ms, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotHeight

  const parts: string[] = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`)
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  parts.push(`<text x="${left}" y="18" font-size="13" font-weight="bold">Latency through Envoy, ms (log scale)</text>`)
  parts.push(`<text x="${left}" y="${height - 8}" fill="#555">bar: p50 · whisker: p50 to p99 · tick: p90</text>`)
  // Legend.
  configs.forEach((cfg, i) => {
    const x = left + i * 150
    parts.push(`<rect x="${x}" y="26" width="10" height="10" fill="${COLORS[cfg] ?? '#333'}"/>`)
    parts.push(`<text x="${x + 14}" y="35">${esc(LABELS[cfg] ?? cfg)}</text>`)
  })
  // Axis and grid lines, one per decade.
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    const yy = y(d).toFixed(1)
    parts.push(`<line x1="${left}" x2="${width - 10}" y1="${yy}" y2="${yy}" stroke="#dddddd"/>`)
    parts.push(`<text x="${left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${d >= 1 ? d.toFixed(0) : d.toString()}</text>`)
  }
  parts.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotHeight}" stroke="#333"/>`)
  cases.forEach((c, gi) => {
    const gx = left + 12 + gi * (groupWidth + groupGap)
    configs.forEach((cfg, i) => {
      const p = get(c, cfg)
      if (!p) return
      const x = gx + i * (bar + gap)
      const color = COLORS[cfg] ?? '#333'
      const y50 = y(p.p50)
      parts.push(`<rect x="${x}" y="${y50.toFixed(1)}" width="${bar}" height="${(top + plotHeight - y50).toFixed(1)}" fill="${color}"><title>${esc(`${c} ${cfg}: p50 ${p.p50} ms, p90 ${p.p90} ms, p99 ${p.p99} ms`)}</title></rect>`)
      const cx = x + bar / 2
      parts.push(`<line x1="${cx}" x2="${cx}" y1="${y(p.p99).toFixed(1)}" y2="${y50.toFixed(1)}" stroke="#222"/>`)
      parts.push(`<line x1="${cx - 4}" x2="${cx + 4}" y1="${y(p.p99).toFixed(1)}" y2="${y(p.p99).toFixed(1)}" stroke="#222"/>`)
      parts.push(`<line x1="${cx - 3}" x2="${cx + 3}" y1="${y(p.p90).toFixed(1)}" y2="${y(p.p90).toFixed(1)}" stroke="#222"/>`)
    })
    const lx = gx + groupWidth / 2
    const ly = top + plotHeight + 10
    parts.push(`<text x="${lx}" y="${ly}" text-anchor="end" transform="rotate(-40 ${lx} ${ly})">${esc(c)}</text>`)
  })
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

/** One line per series: RSS (MiB) against requests sent, on linear axes from zero. */
export function rssChart(series: readonly { readonly name: string; readonly points: readonly (readonly [number, number])[] }[]): string {
  const left = 64
  const top = 44
  const plotWidth = 640
  const plotHeight = 280
  const width = left + plotWidth + 20
  const height = top + plotHeight + 50
  const maxX = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])))
  const rawMaxY = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1])))
  const stepY = rawMaxY > 400 ? 100 : rawMaxY > 100 ? 50 : 10
  const maxY = Math.ceil((rawMaxY * 1.1) / stepY) * stepY
  const stepX = Math.pow(10, Math.floor(Math.log10(maxX))) / (maxX / Math.pow(10, Math.floor(Math.log10(maxX))) < 3 ? 2 : 1)
  const x = (v: number) => left + (v / maxX) * plotWidth
  const y = (v: number) => top + plotHeight - (v / maxY) * plotHeight
  const parts: string[] = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`)
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  parts.push(`<text x="${left}" y="18" font-size="13" font-weight="bold">Resident set size, MiB, against requests sent</text>`)
  series.forEach((s, i) => {
    const lx = left + i * 150
    parts.push(`<rect x="${lx}" y="26" width="10" height="10" fill="${COLORS[s.name] ?? '#333'}"/>`)
    parts.push(`<text x="${lx + 14}" y="35">${esc(LABELS[s.name] ?? s.name)}</text>`)
  })
  for (let v = 0; v <= maxY; v += stepY) {
    parts.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#dddddd"/>`)
    parts.push(`<text x="${left - 6}" y="${y(v).toFixed(1)}" text-anchor="end" dominant-baseline="middle">${v}</text>`)
  }
  for (let v = 0; v <= maxX * 1.0001; v += stepX) {
    parts.push(`<text x="${x(v).toFixed(1)}" y="${top + plotHeight + 16}" text-anchor="middle">${v >= 1000 ? `${v / 1000}k` : v}</text>`)
  }
  parts.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotHeight}" stroke="#333"/>`)
  parts.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${top + plotHeight}" y2="${top + plotHeight}" stroke="#333"/>`)
  for (const s of series) {
    const d = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ')
    parts.push(`<path d="${d}" fill="none" stroke="${COLORS[s.name] ?? '#333'}" stroke-width="1.5"/>`)
  }
  parts.push(`<text x="${left}" y="${height - 8}" fill="#555">requests sent</text>`)
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}
