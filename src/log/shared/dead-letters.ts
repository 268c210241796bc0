import { LogError, type Headers, type Log, type LogRecord, type RecordInput } from '../types.js'
import type { DeadLetter, InFlight } from './share-partition.js'

// Dead letters: the record a shared group appends to its dead-letter stream, with headers naming
// where it came from, how often it was delivered and why it was given up on (redrive.ts reads them).

/** Headers a dead letter carries (besides the original record's own). */
export const DLQ_HEADERS = {
  stream: 'culex-dlq-stream',
  partition: 'culex-dlq-partition',
  offset: 'culex-dlq-offset',
  group: 'culex-dlq-group',
  deliveries: 'culex-dlq-deliveries',
  firstDelivery: 'culex-dlq-first-delivery',
  lastDelivery: 'culex-dlq-last-delivery',
  error: 'culex-dlq-error',
  reason: 'culex-dlq-reason',
  topic: 'culex-dlq-topic'
} as const

const iso = (ms: number | null): string => (ms === null ? '' : new Date(ms).toISOString())

/** What a dead letter says about the deliveries (a shared group's InFlight; a bridge's attempts). */
export type DeliveryHistory = Pick<InFlight, 'deliveries' | 'firstDeliveryAt' | 'lastDeliveryAt' | 'lastError'>

export function deadLetter(group: string, record: LogRecord, e: DeliveryHistory, reason: DeadLetter['reason'], now: number): RecordInput {
  const headers: Headers = {
    ...record.headers,
    [DLQ_HEADERS.stream]: record.stream,
    [DLQ_HEADERS.partition]: String(record.partition),
    [DLQ_HEADERS.offset]: String(record.offset),
    [DLQ_HEADERS.group]: group,
    [DLQ_HEADERS.deliveries]: String(e.deliveries),
    [DLQ_HEADERS.firstDelivery]: iso(e.firstDeliveryAt),
    [DLQ_HEADERS.lastDelivery]: iso(e.lastDeliveryAt ?? now),
    [DLQ_HEADERS.error]: e.lastError ?? '',
    [DLQ_HEADERS.reason]: reason
  }
  if (record.topic !== null) headers[DLQ_HEADERS.topic] = record.topic
  return { key: record.key, value: record.value, headers, topic: record.topic, qos: record.qos, clientId: record.clientId }
}

/**
 * Creates the dead-letter stream `dlq` of `source` when it does not exist: with the source's
 * partitions (a dead letter keeps its partition, so a key keeps its order there too) and retention.
 * Returns its partition count (a shared one, `deadLetter: x` for several streams, may have fewer).
 */
export async function ensureDeadLetterStream(log: Log, source: string, dlq: string): Promise<number> {
  try {
    return (await log.describeStream(dlq)).config.partitions
  } catch (err) {
    if (!(err instanceof LogError && err.code === 'UNKNOWN_STREAM')) throw err
    const info = await log.describeStream(source)
    await log.ensureStream({ name: dlq, partitions: info.config.partitions, retention: info.config.retention })
    return info.config.partitions
  }
}
