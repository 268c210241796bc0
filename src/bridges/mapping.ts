import type { LogRecord } from '../log/types.js'

// Names across systems. MQTT separates topic levels with '/', NATS subjects and AMQP routing keys
// with '.'; MQTT's single-level wildcard '+' is NATS '*' and AMQP '*', its multi-level '#' is
// NATS '>' and AMQP '#'. A topic that has no faithful mapping (a level that is empty or holds
// '.', '*', '>', '#' or whitespace) is refused, not guessed: the record goes to the dead letters.

const BAD_TOKEN = /[.*>#\s]/

export class MappingError extends Error {}

function tokens(topic: string, what: string): string[] {
  const levels = topic.split('/')
  for (const level of levels) {
    if (level === '' || BAD_TOKEN.test(level)) {
      throw new MappingError(`topic ${JSON.stringify(topic)} has no ${what}: a level is empty or holds '.', '*', '>', '#' or whitespace`)
    }
  }
  return levels
}

/** `devices/d1/temp` -> `devices.d1.temp` (a NATS subject or an AMQP routing key). */
export function topicToDotted(topic: string): string {
  return tokens(topic, 'dotted name').join('.')
}

/** `devices.d1.temp` -> `devices/d1/temp`. */
export function dottedToTopic(dotted: string): string {
  return dotted.split('.').join('/')
}

function filterTokens(filter: string, single: string, multi: string): string {
  return filter
    .split('/')
    .map((level) => {
      if (level === '+') return single
      if (level === '#') return multi
      if (level === '' || BAD_TOKEN.test(level))
        throw new MappingError(`filter ${JSON.stringify(filter)} has a level that is empty or holds '.', '*', '>' or whitespace`)
      return level
    })
    .join('.')
}

/** MQTT filter -> NATS subject filter: `devices/+/cmd/#` -> `devices.*.cmd.>`. */
export function filterToNatsSubject(filter: string): string {
  return filterTokens(filter, '*', '>')
}

/** MQTT filter -> AMQP topic-exchange binding key: `devices/+/cmd/#` -> `devices.*.cmd.#`. */
export function filterToAmqpBinding(filter: string): string {
  return filterTokens(filter, '*', '#')
}

/**
 * Fills a template from a record: `{topic}` (the MQTT topic), `{topic.}` (the topic with '.' for
 * '/'), `{key}`, `{stream}`, `{partition}`. A placeholder the record cannot fill (no topic, no key)
 * throws MappingError.
 */
export function render(template: string, record: LogRecord): string {
  return template.replace(/\{(topic\.?|key|stream|partition)\}/g, (_, name: string) => {
    switch (name) {
      case 'topic':
        if (record.topic === null) throw new MappingError(`record ${record.stream}/${record.partition}/${record.offset} has no topic for {topic}`)
        return record.topic
      case 'topic.':
        if (record.topic === null) throw new MappingError(`record ${record.stream}/${record.partition}/${record.offset} has no topic for {topic.}`)
        return topicToDotted(record.topic)
      case 'key':
        if (record.key === null) throw new MappingError(`record ${record.stream}/${record.partition}/${record.offset} has no key for {key}`)
        return record.key
      case 'stream':
        return record.stream
      default:
        return String(record.partition)
    }
  })
}

export const TEMPLATE_HELP = 'a template with {topic}, {topic.} (dots for slashes), {key}, {stream} and {partition}'

/** Whether a template names only known placeholders. */
export function templateProblem(template: string): string | null {
  const unknown = [...template.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]).filter((n) => !['topic', 'topic.', 'key', 'stream', 'partition'].includes(n ?? ''))
  return unknown.length > 0 ? `unknown placeholder {${unknown[0] ?? ''}}` : null
}

/** The id a target deduplicates by (Nats-Msg-Id, the AMQP message-id, the webhook idempotency key). */
export function recordId(record: LogRecord): string {
  return `${record.stream}/${record.partition}/${record.offset}`
}
