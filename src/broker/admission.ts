import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { BrokerCounters } from './counters.js'
import { guardPackets } from './packet-guard.js'

// Admission of a connection before aedes sees it: at most max-connections-per-address from one
// source address (over every listener), and every byte through the packet guard.

export interface AdmissionOptions {
  maxConnectionsPerAddress: number
  maxPacketSize: number
  packetTimeoutMs: number
  maxTopicLength: number
}

export type Handle = (stream: Duplex, request?: IncomingMessage) => void

function addressOf(stream: Duplex, request?: IncomingMessage): string {
  return request?.socket.remoteAddress ?? (stream as { remoteAddress?: string }).remoteAddress ?? 'unknown'
}

export function admission(options: AdmissionOptions, counters: BrokerCounters, handle: Handle): Handle {
  const perAddress = new Map<string, number>()
  return (stream, request) => {
    const address = addressOf(stream, request)
    const open = (perAddress.get(address) ?? 0) + 1
    if (options.maxConnectionsPerAddress > 0 && open > options.maxConnectionsPerAddress) {
      counters.count('connections-per-address', { address, limit: options.maxConnectionsPerAddress })
      stream.destroy()
      return
    }
    perAddress.set(address, open)
    stream.once('close', () => {
      const left = (perAddress.get(address) ?? 1) - 1
      if (left > 0) perAddress.set(address, left)
      else perAddress.delete(address)
    })
    guardPackets(stream, {
      maxPacketSize: options.maxPacketSize,
      packetTimeoutMs: options.packetTimeoutMs,
      maxTopicLength: options.maxTopicLength,
      onViolation: (reason, detail) => counters.count(reason, { address, detail }),
      traffic: counters.traffic
    })
    handle(stream, request)
  }
}
