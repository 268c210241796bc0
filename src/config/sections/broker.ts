import type { Section } from '../section.js'
import { key } from '../section.js'
import { BadValue, bool, optionalText, positiveInteger } from '../values.js'
import type { ListenerSection } from './listeners.js'

function atLeast(min: number): (raw: unknown) => number {
  return (raw) => {
    const n = positiveInteger(raw)
    if (n === null || n < min || n > 65_535) throw new BadValue()
    return n
  }
}

export interface BrokerSection {
  /** null: allowed only while every listener is on loopback. */
  allowAnonymous: boolean | null
  maxClientIdLength: number
  brokerId: string | null
}

export const brokerSection: Section<BrokerSection, BrokerSection & ListenerSection> = {
  name: 'broker',
  defaults: { allowAnonymous: null, maxClientIdLength: 256, brokerId: null },
  keys: {
    'allow-anonymous': key({
      field: 'allowAnonymous',
      parse: bool,
      expected: 'true or false',
      help: 'accept clients without credentials (default: only on loopback)'
    }),
    'max-client-id-length': key({
      field: 'maxClientIdLength',
      parse: atLeast(23),
      expected: 'an integer from 23 to 65535 (a server must accept 23 bytes [MQTT-3.1.3-5])',
      help: 'longest accepted MQTT client id, in bytes, for every protocol version'
    }),
    'broker-id': key({ field: 'brokerId', parse: optionalText, expected: 'a non-empty string', help: 'aedes broker id (default: random per start)' })
  }
  // the check that clients beyond loopback can authenticate is in auth.ts: it needs the auth keys
}
