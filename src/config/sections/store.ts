import type { Durability } from '../../store/group-commit.js'
import type { Section } from '../section.js'
import { key } from '../section.js'
import { oneOf, text } from '../values.js'

export interface StoreSection {
  dataDir: string
  durability: Durability
}

export const storeSection: Section<StoreSection> = {
  name: 'store',
  defaults: { dataDir: './data', durability: 'fsync' },
  keys: {
    'data-dir': key({ field: 'dataDir', parse: text, expected: 'a directory path', help: 'where RocksDB keeps its files' }),
    'durability': key({
      field: 'durability',
      parse: oneOf(['fsync', 'none'] as const),
      expected: '"fsync" or "none"',
      help: 'fsync: acks wait for fsync; none: acks wait for the write, not the disk'
    })
  }
}
