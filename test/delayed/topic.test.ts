import { describe, expect, it } from 'vitest'
import { MAX_DELAY_SECONDS, isDelayedTopic, parseDelayedTopic } from '../../src/delayed/topic.js'

// `$delayed/<seconds>/<topic>` as EMQX has it: whole seconds, 0 to the configured maximum (at
// most EMQX's 4,294,967 s), then a valid topic name.

describe('parseDelayedTopic', () => {
  it('takes whole seconds from 0 to the maximum and the topic after them, slashes included', () => {
    expect(parseDelayedTopic('$delayed/15/x/y', 60)).toEqual({ ok: true, delaySeconds: 15, topic: 'x/y' })
    expect(parseDelayedTopic('$delayed/0/a', 60)).toEqual({ ok: true, delaySeconds: 0, topic: 'a' })
    expect(parseDelayedTopic('$delayed/60/a//b/', 60)).toEqual({ ok: true, delaySeconds: 60, topic: 'a//b/' })
    expect(parseDelayedTopic('$delayed/007/a', 60)).toEqual({ ok: true, delaySeconds: 7, topic: 'a' })
    expect(parseDelayedTopic(`$delayed/${MAX_DELAY_SECONDS}/a`, MAX_DELAY_SECONDS)).toMatchObject({ ok: true, delaySeconds: 4_294_967 })
  })

  it.each([
    ['$delayed/', /the delay is missing/],
    ['$delayed//a', /the delay is missing/],
    ['$delayed/abc/x', /"abc" is not a whole number of seconds from 0 to 60/],
    ['$delayed/-1/x', /"-1" is not a whole number of seconds/],
    ['$delayed/+1/x', /"\+1" is not a whole number/],
    ['$delayed/1.5/x', /"1.5" is not a whole number/],
    ['$delayed/1e3/x', /"1e3" is not a whole number/],
    ['$delayed/ 1/x', /" 1" is not a whole number/],
    ['$delayed/12345678901/x', /is not a whole number/],
    ['$delayed/61/x', /the delay 61 s is longer than the longest allowed, 60 s \(delayed-max-delay\)/],
    ['$delayed/10', /the topic is missing after the delay/],
    ['$delayed/10/', /the topic after the delay is empty/],
    ['$delayed/10/a/+', /not a valid topic name: it contains a wildcard/],
    ['$delayed/10/a/#', /not a valid topic name: it contains a wildcard/],
    ['$delayed/10/$delayed/5/a', /cannot be delayed again/]
  ])('refuses %j, saying why', (topic, problem) => {
    const parsed = parseDelayedTopic(topic, 60)
    expect(parsed.ok).toBe(false)
    expect(parsed.ok ? '' : parsed.problem).toMatch(problem)
  })

  it('is asked only for topics that start with $delayed/', () => {
    expect(isDelayedTopic('$delayed/1/a')).toBe(true)
    expect(isDelayedTopic('$delayed/')).toBe(true)
    expect(isDelayedTopic('$delayed')).toBe(false)
    expect(isDelayedTopic('$delayedx/1/a')).toBe(false)
    expect(isDelayedTopic('a/$delayed/1/a')).toBe(false)
  })
})
