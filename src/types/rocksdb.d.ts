// Minimal typings for the parts of @nxtedition/rocksdb (abstract-level 1 API) that Culex uses.
declare module '@nxtedition/rocksdb' {
  export type BatchOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer }
  export interface RangeOptions {
    gt?: Buffer
    gte?: Buffer
    lt?: Buffer
    lte?: Buffer
    reverse?: boolean
    limit?: number
    keys?: boolean
    values?: boolean
  }
  export interface RocksIterator {
    next(): Promise<[Buffer, Buffer] | undefined>
    nextv(size: number): Promise<Array<[Buffer, Buffer]>>
    all(): Promise<Array<[Buffer, Buffer]>>
    seek(target: Buffer): void
    close(): Promise<void>
    [Symbol.asyncIterator](): AsyncIterator<[Buffer, Buffer]>
  }
  export interface OpenOptions {
    keyEncoding?: 'buffer' | 'utf8'
    valueEncoding?: 'buffer' | 'utf8'
    createIfMissing?: boolean
    errorIfExists?: boolean
  }
  export class RocksLevel {
    constructor(location: string, options?: OpenOptions)
    readonly status: 'opening' | 'open' | 'closing' | 'closed'
    readonly location: string
    /** The native database, for a second handle on another thread (the binding's db_init). */
    readonly handle: bigint
    open(options?: OpenOptions): Promise<void>
    close(): Promise<void>
    get(key: Buffer): Promise<Buffer>
    getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>>
    batch(ops: BatchOp[], options?: { sync?: boolean }): Promise<void>
    clear(options?: RangeOptions): Promise<void>
    iterator(options?: RangeOptions): RocksIterator
    getProperty(property: string): string
  }
}
