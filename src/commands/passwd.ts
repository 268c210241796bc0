import { StringDecoder } from 'node:string_decoder'

// `culex passwd`: mosquitto_passwd for Culex's password file. The password comes from the terminal
// without echo, or as the first line of stdin; never from the command line, where `ps` and the
// shell history would show it.

/**
 * What the command needs from src/auth/password-file.ts. The CLI passes that module: commands
 * import no server code (.dependency-cruiser.cjs), and this one is no HTTP client.
 */
export interface PasswordFileAccess {
  usernameProblem(name: string): string | null
  hashPassword(password: Buffer): Promise<string>
  /** null when the file does not exist. */
  readPasswordFileText(path: string): Promise<string | null>
  parsePasswordFile(text: string, path: string): Map<string, string>
  /** The text with the user's line set, appended, or removed (phc null), other lines unchanged. */
  editPasswordFile(text: string, path: string, user: string, phc: string | null): string
  writePasswordFileText(path: string, text: string): Promise<void>
}

export interface PasswdOptions {
  /** Create or overwrite the file with only this user (mosquitto_passwd -c). */
  create?: boolean
  /** Delete the user (mosquitto_passwd -D). */
  delete?: boolean
}

export interface PasswdIo {
  stdin: NodeJS.ReadStream
  /** Prompts go here (the terminal, when stdin is one). */
  stderr: NodeJS.WritableStream
}

export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2
/** 128 + SIGINT, as a shell reports Ctrl-C. */
export const EXIT_INTERRUPTED = 130

/** A refusal with its exit code; an empty message prints nothing (Ctrl-C). */
export class PasswdError extends Error {
  override name = 'PasswdError'
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE
  ) {
    super(message)
  }
}

/** The CONNECT password is MQTT binary data: at most 65535 bytes. */
const MAX_PASSWORD_BYTES = 65_535

export const PASSWD_HELP = `
The password is read from the terminal without echo (asked twice), or, when stdin is not a
terminal, as the first line of stdin. There is no option to give it on the command line: it
would show in \`ps\` and in the shell history.

Each line of the file is  user:$scrypt$ln=14,r=8,p=1$<salt>$<hash>  (scrypt, PHC string format).
Blank lines and lines starting with '#' are ignored; other lines are kept as they are.

Exit codes: 0 done, 1 refused (bad password file, passwords differ, unknown user for -D),
2 usage error (a bad option, argument or user name), 130 interrupted.

Examples:
  culex passwd /etc/culex/passwords sensor-17        # add sensor-17 or change its password
  culex passwd -D /etc/culex/passwords sensor-17     # delete sensor-17
  printf '%s\\n' "$PW" | culex passwd passwords bob   # from a script
`

function show(name: string): string {
  return JSON.stringify(name)
}

/** Adds, changes or deletes `user` in `file` (mosquitto_passwd's semantics). */
export async function passwd(file: string, user: string, options: PasswdOptions, access: PasswordFileAccess, io: PasswdIo = process): Promise<void> {
  if (options.create && options.delete) throw new PasswdError('-c (create) and -D (delete) cannot be used together', EXIT_USAGE)
  const userProblem = access.usernameProblem(user)
  if (userProblem) throw new PasswdError(`the user name ${show(user)} ${userProblem}`, EXIT_USAGE)

  if (options.delete) {
    const text = await access.readPasswordFileText(file)
    if (text === null) throw new PasswdError(`the password file ${file} does not exist`)
    if (!access.parsePasswordFile(text, file).has(user)) throw new PasswdError(`the user ${show(user)} is not in ${file}`)
    await access.writePasswordFileText(file, access.editPasswordFile(text, file, user, null))
    return
  }

  // a broken file is reported before anyone types a password
  if (!options.create) {
    const text = await access.readPasswordFileText(file)
    if (text !== null) access.parsePasswordFile(text, file)
  }
  const password = await readNewPassword(io)
  let phc: string
  try {
    phc = await access.hashPassword(password)
  } finally {
    password.fill(0)
  }
  // read again: the file may have changed while the password was typed
  const text = options.create ? '' : ((await access.readPasswordFileText(file)) ?? '')
  await access.writePasswordFileText(file, access.editPasswordFile(text, file, user, phc))
}

function checkPassword(password: Buffer): void {
  if (password.length === 0) throw new PasswdError('the password is empty')
  if (password.length > MAX_PASSWORD_BYTES) throw new PasswdError(`the password is ${password.length} bytes long; MQTT allows at most ${MAX_PASSWORD_BYTES}`)
}

/** The new password, as bytes: typed twice on a terminal, or the first line of stdin. */
async function readNewPassword(io: PasswdIo): Promise<Buffer> {
  if (!io.stdin.isTTY) {
    const line = await readFirstLine(io.stdin)
    if (line === null) throw new PasswdError('no password: stdin is empty (give the password as its first line)')
    checkPassword(line)
    return line
  }
  const input = new HiddenInput(io.stdin, io.stderr)
  try {
    const first = Buffer.from(await input.line('Password: '))
    checkPassword(first)
    const again = Buffer.from(await input.line('Reenter password: '))
    const same = first.equals(again)
    again.fill(0)
    if (!same) {
      first.fill(0)
      throw new PasswdError('the passwords do not match')
    }
    return first
  } finally {
    input.close()
  }
}

/** The first line of a non-terminal stdin without its line ending; null when stdin is empty. */
async function readFirstLine(stdin: NodeJS.ReadStream): Promise<Buffer | null> {
  const chunks: Buffer[] = []
  let size = 0
  let empty = true
  // leaving the loop early destroys stdin: nothing after the first line is read
  for await (const chunk of stdin as AsyncIterable<Buffer>) {
    empty = false
    const nl = chunk.indexOf(0x0a)
    chunks.push(nl < 0 ? chunk : chunk.subarray(0, nl))
    size += chunk.length
    // past the limit, enough is known to refuse
    if (nl >= 0 || size > MAX_PASSWORD_BYTES + 1) break
  }
  if (empty) return null
  const all = Buffer.concat(chunks)
  for (const chunk of chunks) chunk.fill(0)
  return all.at(-1) === 0x0d ? all.subarray(0, -1) : all
}

/**
 * Lines typed on the terminal in raw mode, without echo: Enter ends a line, Backspace deletes a
 * character, Ctrl-U the line, Ctrl-C aborts (exit 130), Ctrl-D on an empty line ends input. Escape
 * sequences (arrow keys) are dropped. The terminal is restored on close and on a fatal signal.
 */
class HiddenInput {
  private readonly decoder = new StringDecoder('utf8')
  private readonly done: string[] = []
  private typed = ''
  private failure: PasswdError | null = null
  private waiter: { resolve: (line: string) => void; reject: (err: PasswdError) => void } | null = null
  private afterCr = false
  /** 0: text; 1: after ESC; 2: in a CSI sequence (ESC [); 3: after ESC O. */
  private escape = 0
  private closed = false

  constructor(
    private readonly stdin: NodeJS.ReadStream,
    private readonly out: NodeJS.WritableStream
  ) {
    // raw mode before the first prompt: nothing typed after the prompt is echoed
    stdin.setRawMode(true)
    stdin.on('data', this.onData)
    stdin.on('end', this.onEnd)
    for (const signal of SIGNALS) process.on(signal, this.onSignal)
    stdin.resume()
  }

  line(prompt: string): Promise<string> {
    this.out.write(prompt)
    return new Promise((resolve, reject) => {
      this.waiter = {
        resolve: (line) => {
          // no echo, so no newline either
          this.out.write('\n')
          resolve(line)
        },
        reject: (err) => {
          this.out.write('\n')
          reject(err)
        }
      }
      this.settle()
    })
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.stdin.off('data', this.onData)
    this.stdin.off('end', this.onEnd)
    for (const signal of SIGNALS) process.off(signal, this.onSignal)
    this.stdin.setRawMode(false)
    this.stdin.pause()
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const ch of this.decoder.write(chunk)) this.key(ch)
    chunk.fill(0)
    this.settle()
  }

  private readonly onEnd = (): void => {
    this.failure ??= new PasswdError('no password: the terminal closed')
    this.settle()
  }

  /** Restores the terminal, then dies of the signal as it would have. */
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.close()
    process.kill(process.pid, signal)
  }

  private key(ch: string): void {
    if (this.failure) return
    if (this.escape !== 0) {
      if (this.escape === 1) this.escape = ch === '[' ? 2 : ch === 'O' ? 3 : 0
      else if (this.escape === 3 || (ch >= '@' && ch <= '~')) this.escape = 0
      return
    }
    const afterCr = this.afterCr
    this.afterCr = false
    switch (ch) {
      case '\n':
        // "\r\n" (a paste) is one line end
        if (!afterCr) this.endLine()
        return
      case '\r':
        this.afterCr = true
        this.endLine()
        return
      case '\u0003':
        this.failure = new PasswdError('', EXIT_INTERRUPTED)
        return
      case '\u0004':
        if (this.typed === '') this.failure = new PasswdError('no password: end of input (Ctrl-D)')
        return
      case '\u007f':
      case '\b':
        this.typed = Array.from(this.typed).slice(0, -1).join('')
        return
      case '\u0015':
        this.typed = ''
        return
      case '\u001b':
        this.escape = 1
        return
      default:
        // other control characters are keys, not text
        if (ch >= ' ') this.typed += ch
    }
  }

  private endLine(): void {
    this.done.push(this.typed)
    this.typed = ''
  }

  private settle(): void {
    const waiter = this.waiter
    if (!waiter) return
    const line = this.done.shift()
    if (line !== undefined) {
      this.waiter = null
      waiter.resolve(line)
    } else if (this.failure) {
      this.waiter = null
      waiter.reject(this.failure)
    }
  }
}

const SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGINT']
