import type { Client } from 'aedes'
import type { BrokerCounters } from './counters.js'

// The bound on what the broker holds for one slow reader (installed in aedes's write by
// source-patches.ts). Nothing waits for a subscriber's socket to drain, so no publisher and no
// other client waits on it. Beyond max-outgoing-bytes buffered towards a client:
// - QoS 0 PUBLISHes to it are dropped (counted), as mosquitto drops for a slow client;
// - QoS 1/2 PUBLISHes and acks are still written: a persistent session's copies are in its queue
//   on disk until acknowledged, so they come again after a reconnect;
// - a client that stays over the limit for stuck-client-timeout, or reaches four times the limit,
//   is disconnected (counted).

export interface OutgoingGuardOptions {
  maxOutgoingBytes: number
  stuckClientTimeoutMs: number
}

interface WritablePacket {
  cmd: string
  qos?: number
}

interface Stuck {
  since: number
  timer: NodeJS.Timeout
}

export type OutgoingGuard = (client: Client, packet: WritablePacket) => boolean

export function outgoingGuard(options: OutgoingGuardOptions, counters: BrokerCounters): OutgoingGuard {
  const stuck = new WeakMap<Client, Stuck>()
  const hardLimit = options.maxOutgoingBytes * 4

  const disconnect = (client: Client, why: string): void => {
    const s = stuck.get(client)
    if (s) clearTimeout(s.timer)
    stuck.delete(client)
    counters.count('stuck-client', { clientId: client.id, why, buffered: client.conn.writableLength })
    client.conn.destroy()
  }

  const markStuck = (client: Client): void => {
    if (stuck.has(client)) return
    const timer = setTimeout(() => {
      if (client.conn.writableLength > options.maxOutgoingBytes) disconnect(client, `over max-outgoing-bytes for ${options.stuckClientTimeoutMs} ms`)
      else stuck.delete(client)
    }, options.stuckClientTimeoutMs)
    timer.unref()
    stuck.set(client, { since: Date.now(), timer })
    // drained below the limit: no longer stuck
    const onDrain = (): void => {
      const s = stuck.get(client)
      if (s && client.conn.writableLength <= options.maxOutgoingBytes) {
        clearTimeout(s.timer)
        stuck.delete(client)
      }
    }
    client.conn.once('drain', onDrain)
  }

  return (client, packet) => {
    const buffered = client.conn.writableLength
    if (buffered <= options.maxOutgoingBytes) return true
    if (client.conn.destroyed) return false
    markStuck(client)
    if (buffered > hardLimit) {
      disconnect(client, `${buffered} bytes buffered, four times max-outgoing-bytes`)
      return false
    }
    if (packet.cmd === 'publish' && (packet.qos ?? 0) === 0) {
      counters.count('outgoing-full', { clientId: client.id, buffered })
      return false
    }
    return true
  }
}
