// A small parser of the Prometheus text format (0.0.4), enough for the tests: every sample with
// its labels, and the TYPE of each family. It throws on a line it cannot read, so a malformed
// exposition fails the test.

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

export interface Exposition {
  samples: Sample[]
  types: Map<string, string>
  /** The samples of `name` whose labels include `labels`. */
  get(name: string, labels?: Record<string, string>): Sample[]
  /** The sum of those samples' values (0 when there are none). */
  sum(name: string, labels?: Record<string, string>): number
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/y

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$/.exec(line)
      if (!m) throw new Error(`not a HELP or TYPE line: ${line}`)
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3] ?? '')) throw new Error(`unknown type: ${line}`)
        types.set(m[2] ?? '', m[3] ?? '')
      }
      continue
    }
    const m = SAMPLE.exec(line)
    if (!m) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    const body = m[2] ?? ''
    LABEL.lastIndex = 0
    while (LABEL.lastIndex < body.length) {
      const at = LABEL.lastIndex
      const l = LABEL.exec(body)
      if (!l || l.index !== at) throw new Error(`bad labels: ${line}`)
      labels[l[1] ?? ''] = (l[2] ?? '').replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))
    }
    const raw = m[3] ?? ''
    // Prometheus reads values with Go's ParseFloat: NaN and Inf in any case
    const lower = raw.toLowerCase()
    const value = lower === '+inf' || lower === 'inf' ? Infinity : lower === '-inf' ? -Infinity : lower === 'nan' ? NaN : Number(raw)
    if (Number.isNaN(value) && lower !== 'nan') throw new Error(`bad value: ${line}`)
    samples.push({ name: m[1] ?? '', labels, value })
  }
  const get = (name: string, labels: Record<string, string> = {}): Sample[] =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  return { samples, types, get, sum: (name, labels) => get(name, labels).reduce((a, s) => a + s.value, 0) }
}
