// Runs the aedes-persistence abstract suite (the contract aedes relies on) against
// RocksPersistence, each test on a fresh RocksDB with fsync durability.
import { after, test } from 'node:test'
import { createRequire } from 'node:module'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Store } from '../../src/store/store.js'
import { RocksPersistence } from '../../src/persistence/persistence.js'

interface AbstractOptions {
  test: typeof test
  testAsync: boolean
  persistence: () => Promise<RocksPersistence>
}

const require = createRequire(import.meta.url)
const abstractPersistence = require('aedes-persistence/abstract.js') as (opts: AbstractOptions) => void

const open = new Map<Store, string>()

async function release(store: Store): Promise<void> {
  const dir = open.get(store)
  if (dir === undefined) return
  open.delete(store)
  await store.close()
  await rm(dir, { recursive: true, force: true })
}

async function persistence(): Promise<RocksPersistence> {
  const dir = await mkdtemp(join(tmpdir(), 'culex-persistence-'))
  const store = await Store.open({ dataDir: dir, durability: 'fsync' })
  open.set(store, dir)
  const instance = await RocksPersistence.open(store)
  // destroy() leaves the Store open (it belongs to the gateway); the test owns this one
  const destroy = instance.destroy.bind(instance)
  instance.destroy = async () => {
    await destroy()
    await release(store)
  }
  return instance
}

// stores of tests that did not reach destroy(), so the process can exit
after(async () => {
  await Promise.all([...open.keys()].map(release))
})

abstractPersistence({ test, testAsync: true, persistence })
