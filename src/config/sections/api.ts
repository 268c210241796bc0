import type { Section } from '../section.js'
import { key } from '../section.js'
import { optionalText, port } from '../values.js'
import type { Port } from './listeners.js'

export interface ApiSection {
  /** HTTP API (consumer API, replay; later admin, metrics, dashboard). */
  adminPort: Port
  /** Where the HTTP API binds; null: the same address as the MQTT listeners (`host`). */
  adminHost: string | null
}

export const apiSection: Section<ApiSection> = {
  name: 'api',
  defaults: { adminPort: 18083, adminHost: null },
  keys: {
    'admin-port': key({ field: 'adminPort', parse: port, expected: 'a port 0-65535 or "off"', help: 'HTTP API' }),
    'admin-host': key({
      field: 'adminHost',
      parse: optionalText,
      expected: 'an address to bind, e.g. 127.0.0.1',
      help: 'address the HTTP API binds to (default: host); keep it private when MQTT faces the internet'
    })
  }
}

/** The address the HTTP API binds to. */
export function apiHost(c: ApiSection & { host: string }): string {
  return c.adminHost ?? c.host
}
