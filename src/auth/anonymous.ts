import type { BrokerHook } from '../broker/hooks.js'

/**
 * The last authenticator in the chain: clients that no credential check accepted are let in only
 * when anonymous access is on (by default only while every listener is on loopback, as mosquitto
 * does without a config). With it off and no credential store, every client gets CONNACK 5, as
 * mosquitto does with `allow_anonymous false` and no password file.
 */
export function anonymousAccess(allowed: boolean): BrokerHook {
  return {
    name: 'anonymous-access',
    stage: 'authenticate',
    authenticate: () => (allowed ? { allow: true, method: 'anonymous', username: null } : { allow: false, returnCode: 5, reason: 'anonymous access is off' })
  }
}
