import { mkdtempSync, readFileSync, readdirSync, statSync, chmodSync, writeFileSync } from 'node:fs'
import { open, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  DEFAULT_SCRYPT,
  PasswordFileError,
  UNKNOWN_USER_HASH,
  editPasswordFile,
  formatPasswordFile,
  hashPassword,
  parsePasswordFile,
  readPasswordFile,
  usernameProblem,
  verifyPassword,
  writePasswordFile
} from '../../src/auth/password-file.js'

// The cheapest parameters the bounds allow keep these tests fast; the defaults are checked once.
const FAST = { ln: 10, r: 1, p: 1 }

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'culex-passwords-'))
}

/** The PasswordFileError that `f` throws. */
function refusal(f: () => unknown): PasswordFileError {
  try {
    f()
  } catch (err) {
    expect(err).toBeInstanceOf(PasswordFileError)
    expect((err as PasswordFileError).code).toBe('PASSWORD_FILE')
    return err as PasswordFileError
  }
  throw new Error('no error thrown')
}

describe('hashing', () => {
  it('verifies the password it hashed, with the default parameters', async () => {
    const phc = await hashPassword('correct horse')
    expect(phc).toMatch(/^\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
    expect(DEFAULT_SCRYPT).toEqual({ ln: 14, r: 8, p: 1 })
    expect(await verifyPassword('correct horse', phc)).toBe(true)
    expect(await verifyPassword(Buffer.from('correct horse'), phc)).toBe(true)
  })

  it('refuses a wrong password', async () => {
    const phc = await hashPassword('correct horse', FAST)
    expect(await verifyPassword('correct horsE', phc)).toBe(false)
    expect(await verifyPassword('', phc)).toBe(false)
    expect(await verifyPassword('correct horse ', phc)).toBe(false)
  })

  it('salts: two hashes of the same password differ, and both verify', async () => {
    const [a, b] = await Promise.all([hashPassword('same', FAST), hashPassword('same', FAST)])
    expect(a).not.toBe(b)
    expect(await verifyPassword('same', a)).toBe(true)
    expect(await verifyPassword('same', b)).toBe(true)
  })

  it('stores the parameters it used, and verification uses the stored ones', async () => {
    const phc = await hashPassword('pw', { ln: 10, r: 8, p: 1 })
    expect(phc.startsWith('$scrypt$ln=10,r=8,p=1$')).toBe(true)
    expect(await verifyPassword('pw', phc)).toBe(true)
    const other = await hashPassword('pw', { ln: 11, r: 2, p: 3 })
    expect(other.startsWith('$scrypt$ln=11,r=2,p=3$')).toBe(true)
    expect(await verifyPassword('pw', other)).toBe(true)
    // the same salt and hash under other parameters do not verify
    expect(await verifyPassword('pw', other.replace('ln=11', 'ln=12'))).toBe(false)
  })

  it('hashes a string as its UTF-8 bytes', async () => {
    const phc = await hashPassword('pässwörd €', FAST)
    expect(await verifyPassword(Buffer.from('pässwörd €', 'utf8'), phc)).toBe(true)
    expect(await verifyPassword(Buffer.from('pässwörd €', 'latin1'), phc)).toBe(false)
  })

  it('refuses to hash with parameters out of bounds', async () => {
    await expect(hashPassword('pw', { ln: 9, r: 8, p: 1 })).rejects.toThrow(PasswordFileError)
    await expect(hashPassword('pw', { ln: 21, r: 8, p: 1 })).rejects.toThrow(/ln=21, outside 10\.\.20/)
  })

  it('throws PasswordFileError for a malformed hash, not false', async () => {
    await expect(verifyPassword('pw', 'plain text')).rejects.toThrow(PasswordFileError)
    await expect(verifyPassword('pw', '$scrypt$ln=30,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA')).rejects.toThrow(/ln=30/)
  })

  it('UNKNOWN_USER_HASH is a valid default-parameter hash that no password matches', async () => {
    expect(UNKNOWN_USER_HASH.startsWith('$scrypt$ln=14,r=8,p=1$')).toBe(true)
    expect(parsePasswordFile(`ghost:${UNKNOWN_USER_HASH}\n`, 'f').get('ghost')).toBe(UNKNOWN_USER_HASH)
    for (const pw of ['', 'password', 'ghost', UNKNOWN_USER_HASH, Buffer.alloc(32)]) expect(await verifyPassword(pw, UNKNOWN_USER_HASH)).toBe(false)
  })
})

describe('parsing', () => {
  const hashes: string[] = []
  const hash = async (pw: string): Promise<string> => {
    const phc = await hashPassword(pw, FAST)
    hashes.push(phc)
    return phc
  }

  it('reads users in file order and skips blank and comment lines (LF and CRLF)', async () => {
    const a = await hash('a')
    const b = await hash('b')
    const text = `# Culex users\n\nalice:${a}\n   \n#bob:${b}\r\nbob:${b}\r\ncarol 1:${a}  \n`
    const users = parsePasswordFile(text, 'passwords.txt')
    expect([...users.keys()]).toEqual(['alice', 'bob', 'carol 1'])
    expect(users.get('bob')).toBe(b)
    expect(users.get('carol 1')).toBe(a)
    expect(parsePasswordFile('', 'f').size).toBe(0)
  })

  it('accepts user names MQTT accepts: UTF-8, spaces, U+FEFF, 65535 bytes', async () => {
    const phc = await hash('x')
    for (const name of ['ünïcödé', 'with space', '\uFEFFbom', 'emoji 😀', 'x'.repeat(65_535), 'a#b']) {
      expect(parsePasswordFile(`${name}:${phc}\n`, 'f').has(name)).toBe(true)
      expect(usernameProblem(name)).toBeNull()
    }
  })

  it('refuses malformed lines, naming the file, the line and the problem (never the hash)', async () => {
    const good = await hash('good')
    const cases: [string, RegExp][] = [
      ['no colon here', /passwords\.txt line 3: no ':' between the user name and the password hash/],
      [`:${good}`, /passwords\.txt line 3: the user name "" is empty/],
      [`a:b:${good}`, /passwords\.txt line 3: the user name "a:b" contains ':'/],
      [`nul\u0000user:${good}`, /line 3: the user name "nul\\u0000user" contains U\+0000/],
      [`bad\ud800:${good}`, /line 3: the user name .* is not a valid MQTT string \(it is not well-formed UTF-8/],
      [`${'y'.repeat(65_536)}:${good}`, /line 3: the user name "y{64}…" is 65536 bytes long; the limit is 65535/],
      ['bob:secret', /line 3: the password hash of "bob" is not a PHC string/],
      [`bob:${good.replace('$scrypt$', '$argon2id$')}`, /line 3: the password hash of "bob" is not a PHC string/],
      ['bob:$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0$!!!', /is not a PHC string/],
      ['bob:$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0=$aGFzaGhhc2hoYXNoaGFzaA', /is not a PHC string/],
      ['bob:$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaB', /not base64 without padding/],
      ['bob:$scrypt$ln=14,r=8,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA', /4-byte salt; 8\.\.64 are accepted/],
      ['bob:$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaA', /4-byte hash; 16\.\.64 are accepted/]
    ]
    for (const [line, message] of cases) {
      const err = refusal(() => parsePasswordFile(`# header\nalice:${good}\n${line}\n`, 'passwords.txt'))
      expect(err.message).toMatch(message)
      expect(err.details).toEqual({ path: 'passwords.txt', line: 3 })
      expect(err.message).not.toContain(good.slice(22))
      expect(err.message).not.toContain('secret')
    }
  })

  it('refuses scrypt parameters out of bounds, so a hostile file cannot make a check take minutes', () => {
    const tail = '$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA'
    const cases: [string, RegExp][] = [
      ['ln=9,r=8,p=1', /ln=9, outside 10\.\.20/],
      ['ln=21,r=8,p=1', /ln=21, outside 10\.\.20/],
      ['ln=40,r=8,p=1', /ln=40, outside 10\.\.20/],
      ['ln=14,r=0,p=1', /r=0, outside 1\.\.32/],
      ['ln=14,r=33,p=1', /r=33, outside 1\.\.32/],
      ['ln=14,r=8,p=0', /p=0, outside 1\.\.16/],
      ['ln=14,r=8,p=17', /p=17, outside 1\.\.16/],
      ['ln=20,r=8,p=2', /cost N·r·p = 16777216, over the limit of 8388608/],
      ['ln=20,r=32,p=16', /cost N·r·p/],
      ['ln=16,r=1,p=1', /scrypt needs ln < 16·r/]
    ]
    for (const [params, message] of cases) {
      const err = refusal(() => parsePasswordFile(`\nbob:$scrypt$${params}${tail}\n`, 'pw'))
      expect(err.message).toMatch(/^pw line 2: the password hash of "bob" has scrypt /)
      expect(err.message).toMatch(message)
    }
    // the largest allowed cost parses
    expect(parsePasswordFile(`bob:$scrypt$ln=20,r=8,p=1${tail}\n`, 'pw').size).toBe(1)
    expect(parsePasswordFile(`bob:$scrypt$ln=15,r=32,p=8${tail}\n`, 'pw').size).toBe(1)
  })

  it('refuses a duplicate user, naming both lines', async () => {
    const phc = await hash('d')
    const err = refusal(() => parsePasswordFile(`alice:${phc}\nbob:${phc}\n\nalice:${phc}\n`, 'pw.txt'))
    expect(err.message).toBe('pw.txt line 4: the user "alice" is there already, on line 1')
  })

  it('formats one line per user in insertion order, and round-trips', async () => {
    const users = new Map([
      ['zed', await hash('1')],
      ['alice', await hash('2')],
      ['mid', await hash('3')]
    ])
    const text = formatPasswordFile(users)
    expect(text).toBe(`zed:${users.get('zed')}\nalice:${users.get('alice')}\nmid:${users.get('mid')}\n`)
    expect([...parsePasswordFile(text, 'f')]).toEqual([...users])
    expect(formatPasswordFile(new Map())).toBe('')
  })

  it('formats nothing that would break the file: a bad name or hash is refused', async () => {
    const phc = await hash('x')
    expect(refusal(() => formatPasswordFile(new Map([['a\nb', phc]]))).message).toMatch(/contains a line break/)
    expect(refusal(() => formatPasswordFile(new Map([['#a', phc]]))).message).toMatch(/starts with '#'/)
    expect(refusal(() => formatPasswordFile(new Map([['a', `${phc}\nevil:${phc}`]]))).message).toMatch(/not a PHC string/)
  })

  it('edits one user in place and keeps every other line as it was', async () => {
    const [a, b, c] = [await hash('a'), await hash('b'), await hash('c')]
    const text = `# users\r\nalice:${a}\r\n\n# bob is the gateway\nbob:${b}   \ncarol:${c}`
    const changed = editPasswordFile(text, 'f', 'bob', c)
    expect(changed).toBe(`# users\r\nalice:${a}\r\n\n# bob is the gateway\nbob:${c}\ncarol:${c}`)
    expect(editPasswordFile(text, 'f', 'alice', c)).toBe(`# users\r\nalice:${c}\r\n\n# bob is the gateway\nbob:${b}   \ncarol:${c}`)
    expect(editPasswordFile(text, 'f', 'dave', a)).toBe(`${text}\ndave:${a}\n`)
    expect(editPasswordFile(`${text}\n`, 'f', 'dave', a)).toBe(`${text}\ndave:${a}\n`)
    expect(editPasswordFile('', 'f', 'dave', a)).toBe(`dave:${a}\n`)
    expect(editPasswordFile(text, 'f', 'bob', null)).toBe(`# users\r\nalice:${a}\r\n\n# bob is the gateway\ncarol:${c}`)
    expect(editPasswordFile(text, 'f', 'nobody', null)).toBe(text)
    expect(() => editPasswordFile('broken\n', 'f', 'bob', a)).toThrow(/f line 1: no ':'/)
  })
})

describe('files', () => {
  it('writes a new file with mode 0600 whatever the umask, and reads it back', async () => {
    const dir = tempDir()
    const path = join(dir, 'passwords')
    const users = new Map([['alice', await hashPassword('s3cret-alice', FAST)]])
    const old = process.umask(0o000)
    try {
      await writePasswordFile(path, users)
    } finally {
      process.umask(old)
    }
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(await readPasswordFile(path)).toEqual(users)
  })

  it('keeps the mode of an existing file', async () => {
    const dir = tempDir()
    const path = join(dir, 'passwords')
    writeFileSync(path, '')
    chmodSync(path, 0o640)
    await writePasswordFile(path, new Map([['alice', await hashPassword('x', FAST)]]))
    expect(statSync(path).mode & 0o777).toBe(0o640)
  })

  it('replaces the file atomically: a new inode renamed over it, no temp file left, readers see whole versions', async () => {
    const dir = tempDir()
    const path = join(dir, 'passwords')
    const phc = await hashPassword('x', FAST)
    const versions = [0, 1].map((v) => new Map(Array.from({ length: 2000 }, (_, i) => [`user-${v}-${i}`, phc])))
    await writePasswordFile(path, versions[0]!)
    // held open, the first file's inode cannot be freed and reused by a later write
    const first = await open(path, 'r')
    const before = (await first.stat()).ino
    // a reader racing the writes sees one version or the other, never a mix or a truncated file
    let writing = true
    const reader = (async () => {
      let reads = 0
      while (writing) {
        const users = parsePasswordFile(await readFile(path, 'utf8'), path)
        expect(users.size).toBe(2000)
        expect(new Set([...users.keys()].map((u) => u.split('-')[1])).size).toBe(1)
        reads++
      }
      return reads
    })()
    // 21 writes: the last one leaves version 1
    for (let i = 1; i <= 21; i++) await writePasswordFile(path, versions[i % 2]!)
    writing = false
    expect(await reader).toBeGreaterThan(0)
    expect(statSync(path).ino).not.toBe(before)
    // the open file is still the first version, untouched by the rewrites
    expect(parsePasswordFile(await first.readFile('utf8'), path).has('user-0-0')).toBe(true)
    expect(parsePasswordFile(await readFile(path, 'utf8'), path).has('user-1-0')).toBe(true)
    await first.close()
    expect(readdirSync(dir)).toEqual(['passwords'])
  })

  it('leaves the old file and no temp file when a write is refused', async () => {
    const dir = tempDir()
    const path = join(dir, 'passwords')
    const phc = await hashPassword('x', FAST)
    await writePasswordFile(path, new Map([['alice', phc]]))
    const before = readFileSync(path, 'utf8')
    await expect(writePasswordFile(path, new Map([['bad:name', phc]]))).rejects.toThrow(PasswordFileError)
    await expect(writePasswordFile(join(dir, 'missing-dir', 'passwords'), new Map([['alice', phc]]))).rejects.toThrow(
      /cannot write .*missing-dir\/passwords: no such file or directory/
    )
    expect(readFileSync(path, 'utf8')).toBe(before)
    expect(readdirSync(dir)).toEqual(['passwords'])
  })

  it('never holds a password in clear', async () => {
    const dir = tempDir()
    const path = join(dir, 'passwords')
    const passwords = { alice: 'alice-pass-7Q', bob: 'bob-pass-K9' }
    await writePasswordFile(
      path,
      new Map([
        ['alice', await hashPassword(passwords.alice, FAST)],
        ['bob', await hashPassword(passwords.bob)]
      ])
    )
    const bytes = readFileSync(path)
    for (const pw of Object.values(passwords)) {
      expect(bytes.includes(pw)).toBe(false)
      expect(bytes.includes(Buffer.from(pw).toString('base64').replace(/=+$/, ''))).toBe(false)
    }
    const users = await readPasswordFile(path)
    expect(await verifyPassword(passwords.alice, users.get('alice')!)).toBe(true)
    expect(await verifyPassword(passwords.bob, users.get('bob')!)).toBe(true)
  })

  it('says when the file is missing, and which line is not UTF-8', async () => {
    const dir = tempDir()
    const missing = join(dir, 'nope')
    await expect(readPasswordFile(missing)).rejects.toThrow(`the password file ${missing} does not exist`)
    const path = join(dir, 'latin1')
    const phc = await hashPassword('x', FAST)
    writeFileSync(path, Buffer.concat([Buffer.from(`alice:${phc}\n#\n`), Buffer.from('j\xfcrgen:', 'latin1'), Buffer.from(`${phc}\n`)]))
    const err = await readPasswordFile(path).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(PasswordFileError)
    expect((err as Error).message).toBe(`${path} line 3: it is not well-formed UTF-8`)
  })
})
