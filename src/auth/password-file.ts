import { isUtf8 } from 'node:buffer'
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import type { Stats } from 'node:fs'
import { type FileHandle, open, readFile, realpath, rename, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { CulexError } from '../errors.js'
import { stringProblem } from '../mqtt/topics.js'

// The password file, as mosquitto's: one user per line,
//
//   username:$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>
//
// the hash part being a PHC string (salt and hash in base64 without padding). Blank lines and
// lines starting with '#' are ignored. The user name is everything before the last ':' (a PHC
// string has none). A user name is a non-empty MQTT UTF-8 string of at most 65535 bytes, without
// ':', line breaks or U+0000, and not starting with '#' (the line would read as a comment).
// `culex passwd` (src/commands/passwd.ts) edits the file; the authenticator reads it.

export interface ScryptParams {
  /** log2 of scrypt's cost N. */
  ln: number
  /** Block size. */
  r: number
  /** Parallelism. */
  p: number
}

/**
 * Node's own default (N=16384, r=8, p=1): ~16 MB and a few tens of ms per check, so a reconnect
 * storm of thousands of devices stays affordable. Each line stores its parameters, so they can be
 * raised later without invalidating the file.
 */
export const DEFAULT_SCRYPT: Readonly<ScryptParams> = Object.freeze({ ln: 14, r: 8, p: 1 })

/**
 * Stored parameters must lie within these, and N·r·p at most that of ln=20,r=8,p=1 (~1 GiB and a
 * few seconds), so a hostile or mistyped file cannot make one check take minutes or all memory.
 */
export const SCRYPT_BOUNDS = { ln: [10, 20], r: [1, 32], p: [1, 16] } as const
const MAX_COST = 2 ** 20 * 8

/** scrypt needs 128·r·(N+2) + 128·r·p bytes; this admits every parameter set within the bounds. */
const SCRYPT_MAXMEM = 128 * MAX_COST + 128 * 32 * (2 + 16)

const SALT_BYTES = 16
const KEY_BYTES = 32
/** Accepted lengths of stored salts and hashes (other tools may pick other sizes). */
const SALT_RANGE = [8, 64] as const
const HASH_RANGE = [16, 64] as const

/** MQTT strings (the CONNECT user name) are at most 65535 bytes. */
export const MAX_USERNAME_BYTES = 65_535

export class PasswordFileError extends CulexError<'PASSWORD_FILE'> {
  constructor(message: string, details: { path?: string; line?: number } = {}) {
    super('PASSWORD_FILE', message, details)
  }
}

/** A user name for messages: quoted, escaped, and cut short. */
export function showUser(name: string): string {
  const chars = Array.from(name)
  return JSON.stringify(chars.length > 64 ? chars.slice(0, 64).join('') + '…' : name)
}

const LINE_BREAK = /[\n\r\v\f\u0085\u2028\u2029]/

/** Why `name` cannot be a user in the file (a phrase after "the user name ..."), or null. */
export function usernameProblem(name: string): string | null {
  if (name.length === 0) return 'is empty'
  if (name.includes(':')) return "contains ':'"
  if (LINE_BREAK.test(name)) return 'contains a line break'
  if (name.includes('\u0000')) return 'contains U+0000 [MQTT-1.5.3-2]'
  const mqtt = stringProblem(name)
  if (mqtt) return `is not a valid MQTT string (${mqtt})`
  const bytes = Buffer.byteLength(name, 'utf8')
  if (bytes > MAX_USERNAME_BYTES) return `is ${bytes} bytes long; the limit is ${MAX_USERNAME_BYTES}`
  if (name.startsWith('#')) return "starts with '#', which would make its line a comment"
  return null
}

/** Why scrypt parameters are refused (a phrase), or null. */
export function scryptParamsProblem(params: ScryptParams): string | null {
  for (const key of ['ln', 'r', 'p'] as const) {
    const [min, max] = SCRYPT_BOUNDS[key]
    const value = params[key]
    if (!Number.isInteger(value) || value < min || value > max) return `has scrypt parameter ${key}=${value}, outside ${min}..${max}`
  }
  // scrypt itself (RFC 7914) needs N < 2^(16·r): ln=16 and up need r >= 2
  if (params.ln >= 16 * params.r) return `has scrypt parameters ln=${params.ln},r=${params.r}; scrypt needs ln < 16·r`
  const cost = 2 ** params.ln * params.r * params.p
  if (cost > MAX_COST) return `has scrypt cost N·r·p = ${cost}, over the limit of ${MAX_COST} (ln=20,r=8,p=1)`
  return null
}

interface Phc {
  params: ScryptParams
  salt: Buffer
  hash: Buffer
}

const PHC = /^\$scrypt\$ln=(\d{1,9}),r=(\d{1,9}),p=(\d{1,9})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/

function b64(bytes: Buffer): string {
  return bytes.toString('base64').replace(/=+$/, '')
}

/** Strict: only the canonical unpadded encoding (Buffer.from alone skips bad characters). */
function fromB64(text: string): Buffer | null {
  const bytes = Buffer.from(text, 'base64')
  return b64(bytes) === text ? bytes : null
}

/** The parts of a PHC string, or why it is refused (a phrase after "the password hash ..."). */
function parsePhc(phc: string): Phc | string {
  const m = PHC.exec(phc)
  if (!m) return 'is not a PHC string of the form $scrypt$ln=<n>,r=<n>,p=<n>$<salt>$<hash>'
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) }
  const problem = scryptParamsProblem(params)
  if (problem) return problem
  const salt = fromB64(m[4] ?? '')
  const hash = fromB64(m[5] ?? '')
  if (!salt || !hash) return 'has a salt or hash that is not base64 without padding'
  if (salt.length < SALT_RANGE[0] || salt.length > SALT_RANGE[1]) return `has a ${salt.length}-byte salt; ${SALT_RANGE[0]}..${SALT_RANGE[1]} are accepted`
  if (hash.length < HASH_RANGE[0] || hash.length > HASH_RANGE[1]) return `has a ${hash.length}-byte hash; ${HASH_RANGE[0]}..${HASH_RANGE[1]} are accepted`
  return { params, salt, hash }
}

function formatPhc({ params, salt, hash }: Phc): string {
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${b64(salt)}$${b64(hash)}`
}

/** crypto.scrypt on the libuv threadpool: the event loop never runs the hash. */
function derive(password: string | Buffer, salt: Buffer, keyBytes: number, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyBytes, { N: 2 ** params.ln, r: params.r, p: params.p, maxmem: SCRYPT_MAXMEM }, (err, key) => (err ? reject(err) : resolve(key)))
  })
}

/** A PHC string for `password` (a string is hashed as its UTF-8 bytes), with a fresh random salt. */
export async function hashPassword(password: string | Buffer, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const problem = scryptParamsProblem(params)
  if (problem) throw new PasswordFileError(`the requested hash ${problem}`)
  const salt = randomBytes(SALT_BYTES)
  return formatPhc({ params, salt, hash: await derive(password, salt, KEY_BYTES, params) })
}

/** Whether `password` matches `phc`, derived with the parameters stored in it; throws only for a malformed `phc`. */
export async function verifyPassword(password: string | Buffer, phc: string): Promise<boolean> {
  const parsed = parsePhc(phc)
  if (typeof parsed === 'string') throw new PasswordFileError(`the password hash ${parsed}`)
  const key = await derive(password, parsed.salt, parsed.hash.length, parsed.params)
  return timingSafeEqual(key, parsed.hash)
}

/**
 * Checked for a user who is not in the file, so that an unknown user costs the same time as a
 * wrong password. Its hash is random bytes, not derived from any password: nothing matches it.
 */
export const UNKNOWN_USER_HASH: string = formatPhc({ params: DEFAULT_SCRYPT, salt: randomBytes(SALT_BYTES), hash: randomBytes(KEY_BYTES) })

function lineError(path: string, line: number, what: string): PasswordFileError {
  return new PasswordFileError(`${path} line ${line}: ${what}`, { path, line })
}

/** A line's user and hash; null for a blank or comment line. */
function parseLine(raw: string, path: string, line: number): { user: string; phc: string } | null {
  // CRLF files: neither a user name nor a hash holds '\r'
  const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw
  if (text.trim() === '' || text.startsWith('#')) return null
  const colon = text.lastIndexOf(':')
  if (colon < 0) throw lineError(path, line, "no ':' between the user name and the password hash")
  const user = text.slice(0, colon)
  const phc = text.slice(colon + 1).trimEnd()
  const userProblem = usernameProblem(user)
  if (userProblem) throw lineError(path, line, `the user name ${showUser(user)} ${userProblem}`)
  const parsed = parsePhc(phc)
  if (typeof parsed === 'string') throw lineError(path, line, `the password hash of ${showUser(user)} ${parsed}`)
  return { user, phc }
}

/** username -> PHC string, in file order; `path` is for messages only. */
export function parsePasswordFile(text: string, path: string): Map<string, string> {
  return parseWithLines(text, path).users
}

function parseWithLines(text: string, path: string): { users: Map<string, string>; lines: Map<string, number> } {
  const users = new Map<string, string>()
  const lines = new Map<string, number>()
  text.split('\n').forEach((raw, i) => {
    const entry = parseLine(raw, path, i + 1)
    if (!entry) return
    const first = lines.get(entry.user)
    if (first !== undefined) throw lineError(path, i + 1, `the user ${showUser(entry.user)} is there already, on line ${first}`)
    users.set(entry.user, entry.phc)
    lines.set(entry.user, i + 1)
  })
  return { users, lines }
}

function formatLine(user: string, phc: string): string {
  const userProblem = usernameProblem(user)
  if (userProblem) throw new PasswordFileError(`the user name ${showUser(user)} ${userProblem}`)
  // a bad value must not reach the file, where it could break or add lines
  const parsed = parsePhc(phc)
  if (typeof parsed === 'string') throw new PasswordFileError(`the password hash of ${showUser(user)} ${parsed}`)
  return `${user}:${phc}`
}

/** One line per user, in the map's order, with a trailing newline. */
export function formatPasswordFile(users: ReadonlyMap<string, string>): string {
  let text = ''
  for (const [user, phc] of users) text += formatLine(user, phc) + '\n'
  return text
}

/**
 * `text` with `user`'s line set to `phc` (in place, or appended) or removed (`phc` null). Every
 * other line (users, comments, blank lines) stays as it was. Throws if `text` is not a valid file.
 */
export function editPasswordFile(text: string, path: string, user: string, phc: string | null): string {
  const { lines: lineOf } = parseWithLines(text, path)
  const lines = text === '' ? [''] : text.split('\n')
  const at = lineOf.get(user)
  if (phc === null) {
    if (at !== undefined) lines.splice(at - 1, 1)
    return lines.join('\n')
  }
  const line = formatLine(user, phc)
  if (at !== undefined) {
    lines[at - 1] = (lines[at - 1] ?? '').endsWith('\r') ? line + '\r' : line
  } else {
    // lines ends with '' when the text ends with a newline
    if (lines[lines.length - 1] === '') lines.pop()
    lines.push(line, '')
  }
  return lines.join('\n')
}

function reason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied'
  if (code === 'EISDIR') return 'it is a directory'
  if (code === 'ENOENT') return 'no such file or directory'
  return err instanceof Error ? err.message : String(err)
}

/** The file's text, or null when it does not exist; a PasswordFileError if it is unreadable or not UTF-8. */
export async function readPasswordFileText(path: string): Promise<string | null> {
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new PasswordFileError(`cannot read ${path}: ${reason(err)}`, { path })
  }
  if (!isUtf8(bytes)) {
    let line = 1
    for (let start = 0; start <= bytes.length; line++) {
      const nl = bytes.indexOf(0x0a, start)
      const end = nl < 0 ? bytes.length : nl
      if (!isUtf8(bytes.subarray(start, end))) break
      start = end + 1
    }
    throw lineError(path, line, 'it is not well-formed UTF-8')
  }
  return bytes.toString('utf8')
}

/** The users of the file at `path`; a PasswordFileError when it is missing or invalid. */
export async function readPasswordFile(path: string): Promise<Map<string, string>> {
  const text = await readPasswordFileText(path)
  if (text === null) throw new PasswordFileError(`the password file ${path} does not exist`, { path })
  return parsePasswordFile(text, path)
}

async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

/**
 * Replaces the file with `text` atomically: a temp file (mode 0600) in the same directory, fsynced,
 * renamed over the target. A reader (the broker reloading) sees the old file or the new one, never
 * half of one. A new file gets mode 0600; an existing one keeps its mode, owner and group.
 */
export async function writePasswordFileText(path: string, text: string): Promise<void> {
  try {
    // through a symlink, replace the file it points to, not the link
    const target = await realpath(path).catch(() => path)
    const existing = await statOrNull(target)
    const dir = dirname(target)
    const temp = join(dir, `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`)
    const file = await open(temp, 'wx', 0o600)
    try {
      try {
        await file.writeFile(text, 'utf8')
        // umask can only take bits away: set the mode exactly
        await file.chmod(existing ? existing.mode & 0o7777 : 0o600)
        if (existing) await keepOwner(file, existing)
        await file.sync()
      } finally {
        await file.close()
      }
      await rename(temp, target)
    } catch (err) {
      await unlink(temp).catch(() => undefined)
      throw err
    }
    await syncDir(dir)
  } catch (err) {
    if (err instanceof PasswordFileError) throw err
    throw new PasswordFileError(`cannot write ${path}: ${reason(err)}`, { path })
  }
}

/** The broker may read the file through its group: keep owner and group where we may. */
async function keepOwner(file: FileHandle, existing: Stats): Promise<void> {
  const mine = await file.stat()
  if (mine.uid === existing.uid && mine.gid === existing.gid) return
  await file.chown(existing.uid, existing.gid).catch(() => file.chown(mine.uid, existing.gid).catch(() => undefined))
}

/** The rename is durable once the directory is synced. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => null)
  if (!handle) return
  try {
    await handle.sync()
  } catch {
    // some file systems cannot sync a directory; the data itself is synced
  } finally {
    await handle.close()
  }
}

/** Writes `users` as the whole file, atomically (see writePasswordFileText). */
export async function writePasswordFile(path: string, users: ReadonlyMap<string, string>): Promise<void> {
  await writePasswordFileText(path, formatPasswordFile(users))
}
