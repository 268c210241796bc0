import type { Logger } from 'pino'
import type { BrokerCounters } from '../broker/counters.js'
import type { BrokerHook, Principal } from '../broker/hooks.js'
import { anonymousAllowed, apiCredentialsRequired, apiHost, isLoopback, jwtEnabled, type CulexConfig } from '../config/index.js'
import type { ApiAccess, StreamRight } from '../http/auth.js'
import { Acl } from './acl.js'
import { readAclFile } from './acl-file.js'
import { AclHook } from './acl-hook.js'
import { anonymousAccess } from './anonymous.js'
import { ApiTokens } from './api-tokens.js'
import { certificateAuthenticator } from './certificates.js'
import { JwtVerifier, tokenAuthenticator } from './jwt.js'
import { LoginThrottle } from './login-throttle.js'
import { readPasswordFile } from './password-file.js'
import { PasswordCheck, passwordAuthenticator } from './passwords.js'
import { throttleHook } from './throttle-hook.js'

// Who may connect and what they may touch, assembled from the config: the broker hooks (in the
// order they are asked), the HTTP API's access, and SIGHUP reloads of the files. A reload that
// fails keeps the rules in force and says which file and line is wrong.

export interface ReloadReport {
  reloaded: string[]
  failed: Array<{ what: string; error: string }>
  /** Clients disconnected because their user is gone. */
  disconnected: number
}

export class Authentication {
  private constructor(
    private readonly config: CulexConfig,
    private readonly logger: Logger,
    private readonly throttle: LoginThrottle,
    private readonly passwords: PasswordCheck | null,
    private readonly jwt: JwtVerifier | null,
    private readonly acl: AclHook | null,
    private readonly tokens: ApiTokens,
    private readonly counters: BrokerCounters
  ) {}

  /** Reads the files the config names; a bad file stops the start with a message naming it and the line. */
  static async load(config: CulexConfig, logger: Logger, counters: BrokerCounters): Promise<Authentication> {
    const passwords = config.passwordFile === null ? null : new PasswordCheck(await readPasswordFile(config.passwordFile))
    const jwt = jwtEnabled(config)
      ? await JwtVerifier.load({
          secretFile: config.jwtSecretFile,
          jwksFile: config.jwtJwksFile,
          issuer: config.jwtIssuer,
          audience: config.jwtAudience,
          aclClaim: config.jwtAclClaim
        })
      : null
    const aclFile = config.aclFile === null ? null : new Acl(await readAclFile(config.aclFile))
    // the ACL hook is there when there are rules: a file, or tokens that can carry grants
    const acl = aclFile !== null || jwt !== null ? new AclHook(aclFile) : null
    const auth = new Authentication(
      config,
      logger,
      new LoginThrottle(config.loginFailuresPerMinute),
      passwords,
      jwt,
      acl,
      new ApiTokens(config.apiTokens),
      counters
    )
    auth.warnings()
    return auth
  }

  private warnings(): void {
    const c = this.config
    if (!isLoopback(c.host) && anonymousAllowed(c)) {
      this.logger.warn({ host: c.host }, 'allow-anonymous is true on a non-loopback address: anyone who reaches it may connect without credentials')
    }
    if (apiCredentialsRequired(c) && c.adminPort !== null && this.passwords === null && this.tokens.size === 0) {
      this.logger.warn({ host: apiHost(c) }, 'the HTTP API requires credentials and none are configured (api-tokens, password-file): every request gets 401')
    }
  }

  /** The broker hooks: who may connect (first opinion wins), then what they may touch. */
  hooks(): BrokerHook[] {
    const c = this.config
    return [
      throttleHook(this.throttle, this.counters),
      ...(c.useIdentityAsUsername ? [certificateAuthenticator] : []),
      ...(this.jwt ? [tokenAuthenticator(this.jwt)] : []),
      ...(this.passwords ? [passwordAuthenticator(this.passwords, { tokensToo: this.jwt !== null })] : []),
      anonymousAccess(anonymousAllowed(c)),
      ...(this.acl ? [this.acl] : [])
    ]
  }

  /** The HTTP API's credentials and rights. */
  api(): ApiAccess {
    const { passwords, tokens, throttle, acl, counters } = this
    return {
      required: apiCredentialsRequired(this.config),
      bearer: (token) => tokens.verify(token),
      basic: (username, password) => (passwords === null ? Promise.resolve(false) : passwords.verify(username, password)),
      allows: (username: string | null, right: StreamRight, stream: string) => {
        const rules = acl?.acl
        return rules === null || rules === undefined || rules.streamRights(username).allows(right, stream)
      },
      blocked: (address) => throttle.blocked(address),
      failed: (address, reason) => {
        throttle.failed(address)
        counters.count('login-failed', { address, via: 'http', reason })
      }
    }
  }

  /**
   * Re-reads the password file, the ACL file and the JWT key (SIGHUP). Each file that fails keeps
   * its rules in force. Clients whose user left the password file are disconnected through
   * `disconnect`; the ACL applies to every client's next message.
   */
  async reload(disconnect: (match: (p: Principal) => boolean, reason: string) => number): Promise<ReloadReport> {
    const report: ReloadReport = { reloaded: [], failed: [], disconnected: 0 }
    const attempt = async (what: string, load: () => Promise<void>): Promise<void> => {
      try {
        await load()
        report.reloaded.push(what)
      } catch (err) {
        report.failed.push({ what, error: err instanceof Error ? err.message : String(err) })
      }
    }
    const { passwordFile, aclFile } = this.config
    const passwords = this.passwords
    if (passwordFile !== null && passwords !== null) {
      await attempt('password-file', async () => {
        passwords.replace(await readPasswordFile(passwordFile))
        report.disconnected += disconnect(
          (p) => p.method === 'password' && p.username !== null && !passwords.has(p.username),
          'its user was removed from the password file'
        )
      })
    }
    const acl = this.acl
    if (aclFile !== null && acl !== null) await attempt('acl-file', async () => acl.replace(new Acl(await readAclFile(aclFile))))
    const jwt = this.jwt
    if (jwt !== null) await attempt('jwt key', () => jwt.reload())
    for (const f of report.failed) this.logger.error({ file: f.what, error: f.error }, 'reload failed; the rules in force stay')
    return report
  }
}
