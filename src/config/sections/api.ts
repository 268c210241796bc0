import type { Section } from '../section.js'
import { key } from '../section.js'
import { port } from '../values.js'
import type { Port } from './listeners.js'

export interface ApiSection {
  /** HTTP API (consumer API, replay; later admin, metrics, dashboard). */
  adminPort: Port
}

export const apiSection: Section<ApiSection> = {
  name: 'api',
  defaults: { adminPort: 18083 },
  keys: {
    'admin-port': key({ field: 'adminPort', parse: port, expected: 'a port 0-65535 or "off"', help: 'HTTP API' })
  }
}
