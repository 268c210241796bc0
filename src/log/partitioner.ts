// Key -> partition, stable across restarts and machines. Kafka's default partitioner
// (murmur2 of the key bytes, sign bit cleared, modulo the partition count), so a future
// Kafka-backed log places each key in the same partition as the embedded one does.

/** Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int. */
export function murmur2(data: Buffer): number {
  const length = data.length
  const seed = 0x9747b28c
  const m = 0x5bd1e995
  const r = 24
  let h = (seed ^ length) | 0
  const length4 = length >> 2
  for (let i = 0; i < length4; i++) {
    let k = data.readInt32LE(i << 2)
    k = Math.imul(k, m)
    k ^= k >>> r
    k = Math.imul(k, m)
    h = Math.imul(h, m)
    h ^= k
  }
  const index = length4 << 2
  switch (length & 3) {
    case 3:
      h ^= (data[index + 2] ?? 0) << 16
    // falls through
    case 2:
      h ^= (data[index + 1] ?? 0) << 8
    // falls through
    case 1:
      h ^= data[index] ?? 0
      h = Math.imul(h, m)
  }
  h ^= h >>> 13
  h = Math.imul(h, m)
  h ^= h >>> 15
  return h | 0
}

/** The partition of a key; records without a key are spread round robin by the caller. */
export function partitionForKey(key: string | Buffer, partitions: number): number {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key
  return (murmur2(bytes) & 0x7fffffff) % partitions
}
