import { describe, expect, it } from 'vitest'
import { filterCovers, filterIntersection, filtersOverlap, matches, topicFilterProblem } from '../../src/mqtt/topics.js'

// filtersOverlap / filterCovers / filterIntersection: a table of the tricky cases, then a
// brute-force check against `matches` over every topic name of up to 5 levels.

const OVERLAP: Array<[string, string, boolean]> = [
  ['a/b', 'a/b', true],
  ['a/b', 'a/c', false],
  ['a/+/c', 'a/b/#', true],
  ['a/+', 'a/b/c', false],
  ['a/+', '+/b', true],
  ['+', 'a/b', false],
  // '#' matches the parent level [MQTT-4.7.1-2]
  ['a/#', 'a', true],
  ['a/b/#', 'a', false],
  ['a/#', 'b/#', false],
  ['#', '+/+/+', true],
  ['+/#', '#', true],
  // a filter starting with a wildcard never matches a '$' topic [MQTT-4.7.2-1]
  ['#', '$SYS/#', false],
  ['+/x', '$SYS/x', false],
  ['+/#', '$SYS', false],
  ['$SYS/+', '$SYS/#', true],
  ['$SYS/#', '$SYS', true],
  ['a/#', 'a/$x', true],
  ['a/+', 'a/$x', true],
  // '+' matches an empty level
  ['+/b', '/b', true],
  ['a/+', 'a/', true]
]

const COVERS: Array<[string, string, boolean]> = [
  ['a/#', 'a/+/c', true],
  ['a/#', 'a', true],
  ['a/#', 'a/#', true],
  ['a/+', 'a/#', false],
  ['a/+', 'a', false],
  ['a/+', 'a/b', true],
  ['a/b', 'a/+', false],
  ['a', 'a/#', false],
  ['#', 'a/#', true],
  ['#', '+/x', true],
  ['#', '#', true],
  ['+/#', '#', true],
  ['#', '$SYS/#', false],
  ['+/x', '$SYS/x', false],
  ['+/+', '$SYS/x', false],
  ['$SYS/#', '$SYS/x', true],
  ['$SYS/+', '$SYS/#', false],
  ['+/+', '/', true],
  ['a/+/#', 'a/b', true],
  ['a/+/#', 'a', false]
]

describe('filtersOverlap', () => {
  it.each(OVERLAP)('%j and %j: %s', (a, b, expected) => {
    expect(filtersOverlap(a, b)).toBe(expected)
    expect(filtersOverlap(b, a)).toBe(expected)
  })
})

describe('filterCovers', () => {
  it.each(COVERS)('%j covers %j: %s', (outer, inner, expected) => {
    expect(filterCovers(outer, inner)).toBe(expected)
  })
})

describe('filterIntersection', () => {
  it.each([
    ['a/+', '+/b', 'a/b'],
    ['a/#', '+/b/#', 'a/b/#'],
    ['a/#', 'a', 'a'],
    ['#', '+/x', '+/x'],
    ['+/#', '#', '+/#'],
    ['#', '$SYS/#', null],
    ['$SYS/+', '$SYS/#', '$SYS/+'],
    ['a/b', 'a/c', null]
  ])('%j and %j: %j', (a, b, expected) => {
    expect(filterIntersection(a, b)).toBe(expected)
    expect(filterIntersection(b, a)).toBe(expected)
  })
})

// Filters of up to 4 levels over {a, b, $s, +, #}; topic names of up to 5 levels over
// {a, b, $s, ''}. A witness that two such filters overlap, or that one does not cover the other,
// never needs more levels than that.
const FILTER_LEVELS = ['a', 'b', '$s', '+', '#']
const TOPIC_LEVELS = ['a', 'b', '$s', '']

function allTopics(maxLevels: number): string[] {
  let layer = TOPIC_LEVELS.slice()
  const out = [...layer]
  for (let n = 2; n <= maxLevels; n++) {
    layer = layer.flatMap((t) => TOPIC_LEVELS.map((l) => `${t}/${l}`))
    out.push(...layer)
  }
  return out
}

const TOPICS = allTopics(5)

/** A deterministic PRNG (mulberry32), so that a failure can be reproduced. */
function prng(seed: number): () => number {
  let s = seed
  return () => {
    s = (s + 0x6d2b79f5) | 0
    let t = Math.imul(s ^ (s >>> 15), 1 | s)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function randomFilter(random: () => number): string {
  const n = 1 + Math.floor(random() * 4)
  const levels: string[] = []
  for (let i = 0; i < n; i++) {
    const choices = i === n - 1 ? FILTER_LEVELS : FILTER_LEVELS.filter((l) => l !== '#')
    levels.push(choices[Math.floor(random() * choices.length)]!)
  }
  return levels.join('/')
}

const matchSets = new Map<string, boolean[]>()
function matchSet(filter: string): boolean[] {
  let set = matchSets.get(filter)
  if (!set) {
    set = TOPICS.map((t) => matches(filter, t))
    matchSets.set(filter, set)
  }
  return set
}

describe('brute force against matches()', () => {
  it('agrees on 5,000 random pairs of filters', () => {
    const random = prng(0x5eed)
    for (let k = 0; k < 5000; k++) {
      const a = randomFilter(random)
      const b = randomFilter(random)
      expect(topicFilterProblem(a)).toBeNull()
      const sa = matchSet(a)
      const sb = matchSet(b)
      const both = sa.map((m, i) => m && sb[i]!)
      const overlap = both.includes(true)
      const covers = sb.every((m, i) => !m || sa[i]!)
      expect(filtersOverlap(a, b), `${a} overlaps ${b}`).toBe(overlap)
      expect(filterCovers(a, b), `${a} covers ${b}`).toBe(covers)
      const meet = filterIntersection(a, b)
      if (meet === null) {
        expect(overlap, `${a} meets ${b}`).toBe(false)
      } else {
        expect(topicFilterProblem(meet)).toBeNull()
        expect(matchSet(meet), `${a} meets ${b} in ${meet}`).toEqual(both)
      }
    }
  })

  it('agrees on every pair of filters of up to 3 levels', () => {
    const filters: string[] = []
    const grow = (prefix: string[]): void => {
      for (const level of FILTER_LEVELS) {
        const f = [...prefix, level]
        filters.push(f.join('/'))
        if (level !== '#' && f.length < 3) grow(f)
      }
    }
    grow([])
    expect(filters).toHaveLength(5 + 4 * 5 + 4 * 4 * 5)
    let disagreements = 0
    for (const a of filters) {
      for (const b of filters) {
        const sa = matchSet(a)
        const sb = matchSet(b)
        const overlap = sa.some((m, i) => m && sb[i]!)
        const covers = sb.every((m, i) => !m || sa[i]!)
        if (filtersOverlap(a, b) !== overlap || filterCovers(a, b) !== covers) disagreements++
      }
    }
    expect(disagreements).toBe(0)
  })
})
