import { spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { hashPassword, parsePasswordFile, verifyPassword } from '../../src/auth/password-file.js'
import { CLI } from '../helpers/gateway-process.js'
import { runCli } from '../e2e/helpers.js'

// `culex passwd` as a user runs it (from dist/: `npm run build` first): the password on stdin,
// or typed on a terminal. The terminal is a real pseudo-terminal made by util-linux's `script`.

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'culex-passwd-'))
}

/** `culex passwd <args>` with `stdin` piped in (nothing: an empty stdin). */
function passwd(args: string[], stdin = '', timeoutMs = 20_000): Promise<Run> {
  return runCli(['passwd', ...args], timeoutMs, stdin)
}

async function users(file: string): Promise<Map<string, string>> {
  return parsePasswordFile(readFileSync(file, 'utf8'), file)
}

async function expectPassword(file: string, user: string, password: string): Promise<void> {
  const phc = (await users(file)).get(user)
  expect(phc, `${user} in ${file}`).toBeDefined()
  expect(await verifyPassword(password, phc!)).toBe(true)
}

describe('culex passwd, password on stdin', () => {
  it('adds a user to a new file (mode 0600), then changes its password; the password is in no output', async () => {
    const file = join(tempDir(), 'passwords')
    const added = await passwd([file, 'alice'], 'first-Secret\n')
    expect(added).toEqual({ code: 0, stdout: '', stderr: '' })
    expect(statSync(file).mode & 0o777).toBe(0o600)
    await expectPassword(file, 'alice', 'first-Secret')
    expect(readFileSync(file, 'utf8')).not.toContain('first-Secret')

    const changed = await passwd([file, 'alice'], 'second-Secret\r\nignored second line\n')
    expect(changed.code).toBe(0)
    expect([...(await users(file)).keys()]).toEqual(['alice'])
    await expectPassword(file, 'alice', 'second-Secret')
    expect(await verifyPassword('first-Secret', (await users(file)).get('alice')!)).toBe(false)
  })

  it('takes the password without a final newline, and as bytes (not only UTF-8)', async () => {
    const file = join(tempDir(), 'passwords')
    expect((await passwd([file, 'bob'], 'no-newline')).code).toBe(0)
    await expectPassword(file, 'bob', 'no-newline')
    expect((await passwd([file, 'ünïcode user'], 'pässwörd\n')).code).toBe(0)
    await expectPassword(file, 'ünïcode user', 'pässwörd')
  })

  it('keeps the other lines exactly, comments and order included, when adding, changing and deleting', async () => {
    const file = join(tempDir(), 'passwords')
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((pw) => hashPassword(pw, { ln: 10, r: 1, p: 1 })))
    const original = `# site A devices\nalice:${a}\n\n# the bridge\nbob:${b}\ncarol:${c}\n`
    writeFileSync(file, original)

    expect((await passwd([file, 'bob'], 'new-bob\n')).code).toBe(0)
    const lines = readFileSync(file, 'utf8').split('\n')
    expect(lines.filter((_, i) => i !== 4)).toEqual(original.split('\n').filter((_, i) => i !== 4))
    expect(lines[4]).toMatch(/^bob:\$scrypt\$ln=14,r=8,p=1\$/)
    await expectPassword(file, 'bob', 'new-bob')

    expect((await passwd([file, 'dave'], 'dave-pw\n')).code).toBe(0)
    const withDave = readFileSync(file, 'utf8')
    expect(withDave.startsWith(lines.join('\n'))).toBe(true)
    expect([...(await users(file)).keys()]).toEqual(['alice', 'bob', 'carol', 'dave'])

    const deleted = await passwd(['-D', file, 'bob'])
    expect(deleted).toEqual({ code: 0, stdout: '', stderr: '' })
    expect(readFileSync(file, 'utf8')).toBe(withDave.replace(`${lines[4]}\n`, ''))
    expect([...(await users(file)).keys()]).toEqual(['alice', 'carol', 'dave'])
    await expectPassword(file, 'alice', 'a')
  })

  it('-c creates or overwrites the file with only this user, keeping an existing mode', async () => {
    const file = join(tempDir(), 'passwords')
    expect((await passwd(['-c', file, 'first'], 'one\n')).code).toBe(0)
    expect((await passwd([file, 'second'], 'two\n')).code).toBe(0)
    writeFileSync(file, readFileSync(file, 'utf8') + '# a comment\n')
    chmodSync(file, 0o640)
    expect((await passwd(['--create', file, 'third'], 'three\n')).code).toBe(0)
    expect([...(await users(file)).keys()]).toEqual(['third'])
    expect(readFileSync(file, 'utf8').split('\n')).toHaveLength(2)
    expect(statSync(file).mode & 0o777).toBe(0o640)
    await expectPassword(file, 'third', 'three')
  })

  it('refuses to delete a user who is not there (exit 1), and leaves the file alone', async () => {
    const file = join(tempDir(), 'passwords')
    const missing = await passwd(['-D', file, 'alice'])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toBe(`culex: the password file ${file} does not exist\n`)
    expect((await passwd([file, 'alice'], 'pw\n')).code).toBe(0)
    const before = readFileSync(file, 'utf8')
    const r = await passwd(['-D', file, 'bob'])
    expect(r).toEqual({ code: 1, stdout: '', stderr: `culex: the user "bob" is not in ${file}\n` })
    expect(readFileSync(file, 'utf8')).toBe(before)
  })

  it('refuses an empty or missing password (exit 1) and writes nothing', async () => {
    const file = join(tempDir(), 'passwords')
    expect(await passwd([file, 'alice'], '\n')).toEqual({ code: 1, stdout: '', stderr: 'culex: the password is empty\n' })
    expect(await passwd([file, 'alice'], '\r\n')).toMatchObject({ code: 1, stderr: 'culex: the password is empty\n' })
    expect(await passwd([file, 'alice'], '')).toMatchObject({ code: 1, stderr: 'culex: no password: stdin is empty (give the password as its first line)\n' })
    const long = await passwd([file, 'alice'], 'x'.repeat(70_000) + '\n')
    expect(long).toMatchObject({ code: 1, stderr: expect.stringMatching(/^culex: the password is \d+ bytes long; MQTT allows at most 65535\n$/) as unknown })
    expect(() => statSync(file)).toThrow()
  })

  it('reports a broken password file with its line, before reading a password', async () => {
    const file = join(tempDir(), 'passwords')
    writeFileSync(file, '# ok\nalice:not-a-hash\n')
    const r = await passwd([file, 'bob'], 'never-Shown\n')
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(`culex: ${file} line 2: the password hash of "alice" is not a PHC string of the form $scrypt$ln=<n>,r=<n>,p=<n>$<salt>$<hash>\n`)
    expect(readFileSync(file, 'utf8')).toBe('# ok\nalice:not-a-hash\n')
  })

  it('usage errors exit 2 with one line naming what is wrong', async () => {
    const file = join(tempDir(), 'passwords')
    const cases: [string[], RegExp][] = [
      [[file], /missing required argument 'user'/],
      [[], /missing required argument 'file'/],
      [[file, 'a', 'b'], /too many arguments/],
      [['--password', 'x', file, 'a'], /unknown option '--password'/],
      [['-c', '-D', file, 'a'], /^culex: -c \(create\) and -D \(delete\) cannot be used together\n$/],
      [[file, 'a:b'], /^culex: the user name "a:b" contains ':'\n$/],
      [[file, '#a'], /^culex: the user name "#a" starts with '#'/],
      [[file, ''], /^culex: the user name "" is empty\n$/]
    ]
    const runs = await Promise.all(cases.map(([args]) => passwd(args, 'Pw-not-shown\n')))
    for (const [i, [args, message]] of cases.entries()) {
      const r = runs[i]!
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr).toMatch(message)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stdout + r.stderr).not.toContain('Pw-not-shown')
    }
    expect(() => statSync(file)).toThrow()
  })

  it('--help says why there is no password option', async () => {
    const r = await passwd(['--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('Usage: culex passwd [options] <file> <user>')
    expect(r.stdout).toMatch(/no option to give it on the command line: it\s+would show in `ps` and in the shell history/)
  })
})

/** `culex passwd <args>` on a pseudo-terminal (util-linux `script`); keys are written when asked for. */
class Terminal {
  screen = ''
  readonly exited: Promise<number | null>
  private readonly child

  constructor(args: string[], then = '') {
    const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`
    const command = [process.execPath, CLI, 'passwd', ...args].map(quote).join(' ') + then
    // -e: script exits with the command's code; /dev/null: no typescript file
    this.child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TERM: 'dumb' } })
    this.child.stdout.on('data', (d: Buffer) => (this.screen += d.toString()))
    this.child.stdin.on('error', () => undefined)
    this.exited = new Promise((resolve, reject) => {
      this.child.once('exit', (code) => resolve(code))
      this.child.once('error', reject)
    })
  }

  /** Waits until `text` shows for the `nth` time (bounded), then types `keys`. */
  async answer(text: string, nth: number, keys: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (this.screen.split(text).length - 1 < nth) {
      if (Date.now() > deadline) throw new Error(`"${text}" (#${nth}) not shown in ${timeoutMs} ms; the terminal shows: ${JSON.stringify(this.screen)}`)
      await new Promise((r) => setTimeout(r, 20))
    }
    this.child.stdin.write(keys)
  }

  async exit(timeoutMs = 20_000): Promise<number | null> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs)
    const code = await this.exited
    clearTimeout(timer)
    this.child.stdin.end()
    return code
  }
}

describe('culex passwd on a terminal', () => {
  it('asks twice without echo, stores a hash that verifies, and shows the password nowhere', async () => {
    const file = join(tempDir(), 'passwords')
    const tty = new Terminal([file, 'alice'])
    await tty.answer('Password: ', 1, 'Typed-Secret-42\r')
    await tty.answer('Reenter password: ', 1, 'Typed-Secret-42\r')
    expect(await tty.exit()).toBe(0)
    expect(tty.screen).toContain('Password: ')
    expect(tty.screen).toContain('Reenter password: ')
    expect(tty.screen).not.toContain('Typed-Secret')
    expect(tty.screen).not.toContain('*')
    await expectPassword(file, 'alice', 'Typed-Secret-42')
  })

  it('handles Backspace, Ctrl-U and arrow keys as keys, not text', async () => {
    const file = join(tempDir(), 'passwords')
    const tty = new Terminal([file, 'bob'])
    // Ctrl-U drops "wrong", the left arrow (ESC [ D) is no text, DEL and ^H delete one character
    await tty.answer('Password: ', 1, 'wrong\u0015k3y-\u001b[DBravox\u007f\r')
    await tty.answer('Reenter password: ', 1, 'k3y-Bravp\bo\r')
    expect(await tty.exit()).toBe(0)
    expect(tty.screen).not.toMatch(/wrong|k3y|Brav/)
    await expectPassword(file, 'bob', 'k3y-Bravo')
  })

  it('refuses two different passwords (exit 1) and leaves the file alone', async () => {
    const file = join(tempDir(), 'passwords')
    writeFileSync(file, '# nobody yet\n')
    const tty = new Terminal([file, 'alice'])
    await tty.answer('Password: ', 1, 'First-One\r')
    await tty.answer('Reenter password: ', 1, 'Second-One\r')
    expect(await tty.exit()).toBe(1)
    expect(tty.screen).toContain('culex: the passwords do not match')
    expect(tty.screen).not.toMatch(/First-One|Second-One/)
    expect(readFileSync(file, 'utf8')).toBe('# nobody yet\n')
  })

  it('refuses an empty password at once', async () => {
    const file = join(tempDir(), 'passwords')
    const tty = new Terminal([file, 'alice'])
    await tty.answer('Password: ', 1, '\r')
    expect(await tty.exit()).toBe(1)
    expect(tty.screen).toContain('culex: the password is empty')
    expect(tty.screen).not.toContain('Reenter password: ')
    expect(() => statSync(file)).toThrow()
  })

  it('Ctrl-C aborts with exit 130 and gives the terminal back with echo on', async () => {
    const file = join(tempDir(), 'passwords')
    // after culex, the shell in the terminal reports its exit code and the terminal's modes
    const tty = new Terminal([file, 'alice'], '; echo "exit=$?"; stty -a')
    await tty.answer('Password: ', 1, 'Half-Typ\u0003')
    expect(await tty.exit()).toBe(0)
    expect(tty.screen).toContain('exit=130')
    expect(tty.screen).not.toContain('Half-Typ')
    const modes = tty.screen.slice(tty.screen.indexOf('exit=130'))
    expect(modes).toMatch(/(^|\s)icanon(\s|$)/m)
    expect(modes).toMatch(/(^|\s)echo(\s|$)/m)
    expect(modes).toMatch(/(^|\s)isig(\s|$)/m)
    expect(() => statSync(file)).toThrow()
  })
})
