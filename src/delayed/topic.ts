import { topicNameProblem } from '../mqtt/topics.js'

// The delayed-publish topic, as EMQX has it: `$delayed/<seconds>/<topic>` publishes `<topic>`
// <seconds> from now. <seconds> is a whole number (digits only); EMQX accepts up to 4,294,967 s
// (about 49.7 days), which is the most `delayed-max-delay` can be set to. Whether the publisher
// may publish to <topic> (the ACL, `$SYS`) is for the authorize stage, which judges the target.

export const DELAYED_PREFIX = '$delayed/'

/** EMQX's upper bound on the delay of `$delayed/<seconds>/...` (seconds). */
export const MAX_DELAY_SECONDS = 4_294_967

export type DelayedTopic = { ok: true; delaySeconds: number; topic: string } | { ok: false; problem: string }

const FORM = `use ${DELAYED_PREFIX}<seconds>/<topic>`

/** Whether a publish to `topic` asks for a delayed publish (valid or not). */
export function isDelayedTopic(topic: string): boolean {
  return topic.startsWith(DELAYED_PREFIX)
}

/**
 * The delay and target topic of a `$delayed/` topic, or why it is not a valid one: a delay that
 * is not whole seconds from 0 to `maxDelaySeconds`, a missing or invalid target topic (empty,
 * wildcards), or a target that is itself a delayed topic.
 */
export function parseDelayedTopic(topic: string, maxDelaySeconds: number): DelayedTopic {
  const rest = topic.slice(DELAYED_PREFIX.length)
  const slash = rest.indexOf('/')
  const delay = slash < 0 ? rest : rest.slice(0, slash)
  if (delay === '') return { ok: false, problem: `the delay is missing: ${FORM}` }
  // digits only: no sign, no fraction, no exponent; at most 10 digits, so Number() is exact
  if (!/^\d{1,10}$/.test(delay)) {
    return { ok: false, problem: `the delay ${JSON.stringify(delay.slice(0, 32))} is not a whole number of seconds from 0 to ${maxDelaySeconds}: ${FORM}` }
  }
  const delaySeconds = Number(delay)
  if (delaySeconds > maxDelaySeconds) {
    return { ok: false, problem: `the delay ${delaySeconds} s is longer than the longest allowed, ${maxDelaySeconds} s (delayed-max-delay)` }
  }
  if (slash < 0) return { ok: false, problem: `the topic is missing after the delay: ${FORM}` }
  const target = rest.slice(slash + 1)
  if (target === '') return { ok: false, problem: `the topic after the delay is empty: ${FORM}` }
  const problem = topicNameProblem(target)
  if (problem) return { ok: false, problem: `the topic after the delay is not a valid topic name: ${problem}` }
  if (isDelayedTopic(target)) return { ok: false, problem: 'a delayed publish cannot be delayed again' }
  return { ok: true, delaySeconds, topic: target }
}
