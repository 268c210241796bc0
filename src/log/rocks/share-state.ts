import type { BatchOp } from '@nxtedition/rocksdb'
import type { Store } from '../../store/store.js'
import { NAME_RULE, isValidName } from '../names.js'
import { LogError, type SharePartitionState, type ShareRecordState, type ShareStateUpdate, type StoredShareGroup } from '../types.js'
import {
  parseShareKey,
  readU64Value,
  shareConfigKey,
  shareConfigRange,
  sharePositionKey,
  sharePositionRange,
  shareRecordKey,
  shareRecordRange
} from './keys.js'

// Shared-group state of the embedded log (the Log contract's share methods; src/log/shared/ keeps
// the logic): a config per group, a position per partition, a state per unfinished record.

export async function listShareGroups(store: Store): Promise<string[]> {
  const groups: string[] = []
  for await (const k of store.scanKeys(shareConfigRange())) groups.push(k.toString('utf8', 3))
  return groups
}

export async function loadShareGroup(store: Store, group: string): Promise<StoredShareGroup | null> {
  const config = await store.get(shareConfigKey(group))
  if (config === undefined) return null
  const partitions = new Map<string, SharePartitionState>()
  for await (const [k, v] of store.scan(sharePositionRange(group))) {
    const { stream, partition } = parseShareKey(k, false)
    partitions.set(`${stream}\u0000${partition}`, { stream, partition, floor: readU64Value(v), next: Number(v.readBigUInt64BE(8)), records: [] })
  }
  for await (const [k, v] of store.scan(shareRecordRange(group))) {
    const { stream, partition, offset } = parseShareKey(k, true)
    const state = partitions.get(`${stream}\u0000${partition}`)
    // a record state is only ever written with its partition's position
    if (state) state.records.push({ ...(JSON.parse(v.toString('utf8')) as Omit<ShareRecordState, 'offset'>), offset })
  }
  return { config: config.toString('utf8'), partitions: [...partitions.values()] }
}

export async function saveShareConfig(store: Store, group: string, config: string): Promise<void> {
  if (!isValidName(group)) throw new LogError('INVALID_ARGUMENT', `invalid group name "${group}": expected ${NAME_RULE}`)
  await store.write([{ type: 'put', key: shareConfigKey(group), value: Buffer.from(config, 'utf8') }])
}

export async function updateShareState(store: Store, group: string, updates: ShareStateUpdate[]): Promise<void> {
  const ops: BatchOp[] = []
  for (const u of updates) {
    if (u.position) {
      const value = Buffer.allocUnsafe(16)
      value.writeBigUInt64BE(BigInt(u.position.floor), 0)
      value.writeBigUInt64BE(BigInt(u.position.next), 8)
      ops.push({ type: 'put', key: sharePositionKey(group, u.stream, u.partition), value })
    }
    for (const r of u.put ?? []) {
      const { offset, ...rest } = r
      ops.push({ type: 'put', key: shareRecordKey(group, u.stream, u.partition, offset), value: Buffer.from(JSON.stringify(rest), 'utf8') })
    }
    for (const offset of u.remove ?? []) ops.push({ type: 'del', key: shareRecordKey(group, u.stream, u.partition, offset) })
  }
  if (ops.length > 0) await store.write(ops)
}

export async function deleteShareGroup(store: Store, group: string): Promise<void> {
  const ops: BatchOp[] = [{ type: 'del', key: shareConfigKey(group) }]
  for (const range of [sharePositionRange(group), shareRecordRange(group)]) {
    for await (const k of store.scanKeys(range)) ops.push({ type: 'del', key: k })
  }
  await store.write(ops)
}
