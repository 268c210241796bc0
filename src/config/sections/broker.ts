import { ConfigError } from '../errors.js'
import type { Section } from '../section.js'
import { key } from '../section.js'
import { bool, optionalText, positiveInt } from '../values.js'
import { isLoopback, type ListenerSection } from './listeners.js'

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
    'max-client-id-length': key({ field: 'maxClientIdLength', parse: positiveInt, expected: 'a positive integer', help: 'longest accepted MQTT client id' }),
    'broker-id': key({ field: 'brokerId', parse: optionalText, expected: 'a non-empty string', help: 'aedes broker id (default: random per start)' })
  },
  check(c) {
    if (!isLoopback(c.host) && c.allowAnonymous !== true) {
      // Security by default: beyond localhost, anonymous access must be an explicit decision.
      throw new ConfigError(
        `host ${c.host} is not loopback: clients there must authenticate, and no authentication is configured; ` +
          'set allow-anonymous to true to accept anonymous clients on this address'
      )
    }
  }
}

/** Whether clients without credentials are accepted. */
export function anonymousAllowed(c: BrokerSection & Pick<ListenerSection, 'host'>): boolean {
  return c.allowAnonymous ?? isLoopback(c.host)
}
