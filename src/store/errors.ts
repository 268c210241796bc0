import { CulexError } from '../errors.js'

// What the store could not do. STORE_FULL: the disk (or the file system of data-dir) is full;
// STORE_FAILED: any other write or open failure. Both are retriable from a client's point of view
// (another gateway, or this one restarted with room, will take the write).

export type StoreErrorCode = 'STORE_FULL' | 'STORE_FAILED'

export class StoreError extends CulexError<StoreErrorCode> {
  constructor(code: StoreErrorCode, message: string, cause?: unknown) {
    super(code, message, {}, true)
    if (cause !== undefined) this.cause = cause
  }
}

/** The message of an error and of every cause under it: "Database is not open" alone hides ENOSPC. */
export function causeChain(err: unknown): string {
  const parts: string[] = []
  for (let e: unknown = err; e instanceof Error && parts.length < 5; e = e.cause) parts.push(e.message)
  return parts.length > 0 ? parts.join(': ') : String(err)
}

export function storeError(what: string, err: unknown): StoreError {
  const chain = causeChain(err)
  const full = /No space left on device|ENOSPC/i.test(chain)
  return new StoreError(full ? 'STORE_FULL' : 'STORE_FAILED', `${what}: ${full ? 'the disk is full' : 'RocksDB failed'} (${chain})`, err)
}
