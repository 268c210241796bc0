import type { BrokerHook } from '../broker/hooks.js'
import type { BrokerCounters } from '../broker/counters.js'
import type { LoginThrottle } from './login-throttle.js'

/**
 * First in the authenticate stage: an address over its failed-login budget is refused before any
 * credential is checked (CONNACK 5), and every failed CONNECT counts against its address.
 */
export function throttleHook(throttle: LoginThrottle, counters: BrokerCounters): BrokerHook {
  return {
    name: 'login-throttle',
    stage: 'authenticate',
    authenticate: (connect) => {
      const waitMs = throttle.blocked(connect.remoteAddress)
      if (waitMs === 0) return undefined
      counters.count('login-throttled', { address: connect.remoteAddress, retryInMs: waitMs })
      return { allow: false, returnCode: 5, reason: `too many failed logins from this address; retry in ${Math.ceil(waitMs / 1000)} s`, quiet: true }
    },
    authenticationFailed: (connect, refusal) => {
      // the throttled attempts themselves do not count again
      if (refusal.quiet === true) return
      throttle.failed(connect.remoteAddress)
      counters.count('login-failed', { address: connect.remoteAddress, clientId: connect.clientId, username: connect.username ?? null, reason: refusal.reason })
    }
  }
}
