import type { BrokerHook } from '../broker/hooks.js'

/**
 * `use-identity-as-username` (mosquitto's option): a client with a verified certificate is the
 * user named by its subject CN, whatever its CONNECT says; it needs no password. Clients without
 * one (plain listeners) go on to the next authenticator.
 */
export const certificateAuthenticator: BrokerHook = {
  name: 'certificate',
  stage: 'authenticate',
  authenticate: (connect) => (connect.certificateName === undefined ? undefined : { allow: true, method: 'certificate', username: connect.certificateName })
}
