import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { ServerProcess, freePort, tempDir } from './process.js'

// A real mosquitto 2.0 for the MQTT bridge tests: its own config file, port and data dir, never the
// system service. Persistence is on, but mosquitto writes its database only on a clean shutdown and
// every `autosave_interval` seconds: a kill -9 loses what it held in memory since the last save
// (messages, sessions). That is mosquitto's durability, not the bridge's (see bridge-mqtt.md).

export const MOSQUITTO = '/usr/sbin/mosquitto'
export const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd'

export interface MosquittoOptions {
  /** user -> password; written with mosquitto_passwd. Without users, anonymous clients are allowed. */
  users?: Record<string, string>
  /** Also allow anonymous clients when there are users (default: only when there are none). */
  allowAnonymous?: boolean
  /** The contents of an acl_file (`user NAME`, `topic [read|write|readwrite|deny] TOPIC`). */
  acl?: string
  /** A second listener with TLS: PEM file paths; `requireCertificate` asks for a client certificate. */
  tls?: { cert: string; key: string; ca: string; requireCertificate?: boolean }
  /** `log_type all`: mosquitto logs every packet (Received PUBACK from ..., Sending PUBLISH to ...). */
  verbose?: boolean
  /** More config lines (max_queued_messages, message_size_limit, ...). */
  extra?: string[]
}

export interface MosquittoServer {
  process: ServerProcess
  port: number
  url: string
  /** mqtts:// on the TLS listener, when `tls` was given. */
  tlsUrl: string | null
  dir: string
  /** What mosquitto wrote to stdout/stderr (the last 64 KiB). */
  output(): string
  kill9(): Promise<void>
  start(): Promise<void>
  stop(): Promise<void>
  dispose(): Promise<void>
}

/** A CONNECT (MQTT 3.1.1) round trip: ready once mosquitto answers with a CONNACK (any return code). */
function connackProbe(port: number): Promise<boolean> {
  return new Promise((res) => {
    const socket = connect({ host: '127.0.0.1', port })
    const timer = setTimeout(() => {
      socket.destroy()
      res(false)
    }, 1000)
    socket.once('error', () => {
      clearTimeout(timer)
      res(false)
    })
    socket.once('data', (d: Buffer) => {
      clearTimeout(timer)
      socket.destroy()
      res(d[0] === 0x20)
    })
    // fixed header 0x10, remaining length 17: "MQTT", level 4, flags clean session, keepalive 10, client id "probe"
    socket.write(Buffer.from([0x10, 17, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 10, 0, 5, 0x70, 0x72, 0x6f, 0x62, 0x65]))
  })
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<MosquittoServer> {
  const port = await freePort()
  const tlsPort = options.tls ? await freePort() : null
  const dir = tempDir('mosquitto')
  const users = options.users ?? {}
  const lines = [
    // as root, mosquitto would switch to the `mosquitto` user, who cannot write our temp dir
    `user ${userInfo().username}`,
    // per_listener_settings false: allow_anonymous, password_file and acl_file apply to every listener
    `listener ${port} 127.0.0.1`,
    `allow_anonymous ${options.allowAnonymous ?? Object.keys(users).length === 0}`,
    'persistence true',
    `persistence_location ${dir}/`,
    'autosave_interval 1',
    // no limit on QoS 1/2 messages in flight to a subscriber: what mosquitto acknowledged is sent on at once
    'max_inflight_messages 0',
    'max_queued_messages 100000',
    'log_dest stderr',
    ...(options.verbose ? ['log_type all'] : ['log_type error', 'log_type warning', 'log_type notice'])
  ]
  if (Object.keys(users).length > 0) {
    const file = join(dir, 'passwd')
    writeFileSync(file, '', { mode: 0o600 })
    for (const [user, password] of Object.entries(users)) execFileSync(MOSQUITTO_PASSWD, ['-b', file, user, password], { stdio: 'ignore' })
    lines.push(`password_file ${file}`)
  }
  if (options.acl !== undefined) {
    const file = join(dir, 'acl')
    writeFileSync(file, options.acl, { mode: 0o600 })
    lines.push(`acl_file ${file}`)
  }
  if (options.tls && tlsPort !== null) {
    lines.push(`listener ${tlsPort} 127.0.0.1`, `certfile ${options.tls.cert}`, `keyfile ${options.tls.key}`, `cafile ${options.tls.ca}`)
    if (options.tls.requireCertificate) lines.push('require_certificate true')
  }
  lines.push(...(options.extra ?? []), '')
  const conf = join(dir, 'mosquitto.conf')
  writeFileSync(conf, lines.join('\n'))
  const process = await ServerProcess.start({
    name: 'mosquitto',
    command: MOSQUITTO,
    args: ['-c', conf],
    port,
    ready: () => connackProbe(port),
    dirs: [dir]
  })
  return {
    process,
    port,
    url: `mqtt://127.0.0.1:${port}`,
    tlsUrl: tlsPort === null ? null : `mqtts://localhost:${tlsPort}`,
    dir,
    output: () => process.output,
    kill9: () => process.kill9(),
    start: () => process.start(),
    stop: () => process.stop(),
    dispose: () => process.dispose()
  }
}
