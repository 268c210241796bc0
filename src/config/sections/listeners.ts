import { ConfigError } from '../errors.js'
import type { Section } from '../section.js'
import { key } from '../section.js'
import { BadValue, optionalText, port, positiveInt, text } from '../values.js'

/** A listener port: a number (0 = any free port) or null when the listener is off. */
export type Port = number | null

export interface ListenerSection {
  host: string
  mqttPort: Port
  wsPort: Port
  wsPath: string
  tlsPort: Port
  wssPort: Port
  tlsCert: string | null
  tlsKey: string | null
  tlsCa: string | null
  tlsCrl: string | null
  maxConnections: number
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host)
}

function urlPath(raw: unknown): string {
  const p = text(raw)
  if (!p.startsWith('/')) throw new BadValue()
  return p
}

export const listenerSection: Section<ListenerSection> = {
  name: 'listeners',
  defaults: {
    host: '127.0.0.1',
    mqttPort: 1883,
    wsPort: 8083,
    wsPath: '/mqtt',
    tlsPort: 8883,
    wssPort: 8084,
    tlsCert: null,
    tlsKey: null,
    tlsCa: null,
    tlsCrl: null,
    maxConnections: 100_000
  },
  keys: {
    'host': key({ field: 'host', parse: text, expected: 'an address to bind, e.g. 127.0.0.1 or 0.0.0.0', help: 'address every listener binds to' }),
    'mqtt-port': key({ field: 'mqttPort', parse: port, expected: 'a port 0-65535 (0 = any free port) or "off"', help: 'MQTT over TCP' }),
    'ws-port': key({ field: 'wsPort', parse: port, expected: 'a port 0-65535 or "off"', help: 'MQTT over WebSocket' }),
    'ws-path': key({ field: 'wsPath', parse: urlPath, expected: 'a URL path starting with /', help: 'HTTP path of the WebSocket listeners' }),
    'tls-port': key({ field: 'tlsPort', parse: port, expected: 'a port 0-65535 or "off"', help: 'MQTT over TLS (needs tls-cert and tls-key)' }),
    'wss-port': key({ field: 'wssPort', parse: port, expected: 'a port 0-65535 or "off"', help: 'MQTT over secure WebSocket (needs tls-cert and tls-key)' }),
    'tls-cert': key({ field: 'tlsCert', parse: optionalText, expected: 'a PEM certificate file path', help: 'server certificate (PEM)' }),
    'tls-key': key({ field: 'tlsKey', parse: optionalText, expected: 'a PEM private key file path', help: 'server private key (PEM)' }),
    'tls-ca': key({
      field: 'tlsCa',
      parse: optionalText,
      expected: 'a PEM CA bundle file path',
      help: 'CA for client certificates (enables client certificate requests)'
    }),
    'tls-crl': key({
      field: 'tlsCrl',
      parse: optionalText,
      expected: 'a PEM CRL file path (one or more CRLs)',
      help: 'revoked client certificates (needs tls-ca)'
    }),
    'max-connections': key({ field: 'maxConnections', parse: positiveInt, expected: 'a positive integer', help: 'connections accepted per listener' })
  },
  check(c) {
    const tlsWanted = c.tlsCert !== null || c.tlsKey !== null
    if (tlsWanted && (c.tlsCert === null || c.tlsKey === null)) throw new ConfigError('tls-cert and tls-key must be given together')
    if (c.tlsCa !== null && !tlsWanted) throw new ConfigError('tls-ca needs tls-cert and tls-key')
    // a CRL revokes client certificates, which are only requested with a CA
    if (c.tlsCrl !== null && c.tlsCa === null) throw new ConfigError('tls-crl needs tls-ca (client certificates are only checked with a CA)')
  }
}

/** Whether TLS listeners start (both tls-cert and tls-key are set). */
export function tlsEnabled(c: ListenerSection): c is ListenerSection & { tlsCert: string; tlsKey: string } {
  return c.tlsCert !== null && c.tlsKey !== null
}
