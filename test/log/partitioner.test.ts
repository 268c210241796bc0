import { describe, expect, it } from 'vitest'
import { murmur2, partitionForKey } from '../../src/log/partitioner.js'

// Kafka's own vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
// testMurmur2): a key lands in the same partition as with Kafka's default partitioner.
const KAFKA_VECTORS: Array<[string, number]> = [
  ['21', -973932308],
  ['foobar', -790332482],
  ['a-little-bit-long-string', -985981536],
  ['a-little-bit-longer-string', -1486304829],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
  ['abc', 479470107]
]

describe('partitioner', () => {
  it.each(KAFKA_VECTORS)('murmur2(%j) is %i, as in Kafka', (key, hash) => {
    expect(murmur2(Buffer.from(key))).toBe(hash)
  })

  it('clears the sign bit before the modulo (toPositive), as Kafka does', () => {
    expect(partitionForKey('foobar', 7)).toBe((-790332482 & 0x7fffffff) % 7)
    expect(partitionForKey(Buffer.from('21'), 1000)).toBe((-973932308 & 0x7fffffff) % 1000)
  })

  it('hashes the UTF-8 bytes of a string key, every length mod 4 included', () => {
    for (const key of ['', 'a', 'ab', 'abc', 'abcd', 'ü', 'é€']) {
      expect(partitionForKey(key, 16)).toBe(partitionForKey(Buffer.from(key, 'utf8'), 16))
      expect(partitionForKey(key, 16)).toBeGreaterThanOrEqual(0)
    }
  })
})
