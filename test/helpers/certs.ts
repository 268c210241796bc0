import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

// A throwaway certificate authority for TLS tests, made with the openssl command line (3.0, as on
// Debian 12): EC P-256 keys, certificates issued and revoked with `openssl ca`, so the index, the
// serials and the CRL are the ones a real small CA keeps. Every path is a PEM file.

export interface ClientCert {
  cert: string
  key: string
}

export interface TestPki {
  dir: string
  caCert: string
  /** CN=localhost, subjectAltName IP:127.0.0.1 and DNS:localhost. */
  serverCert: string
  serverKey: string
  /** The CA's CRL; empty at first, rewritten by revoke(). Valid for a day. */
  crl: string
  /** A client certificate (extendedKeyUsage clientAuth) with this subject CN; issued once per CN. */
  client(cn: string): ClientCert
  /** Revokes the client's certificate and regenerates the CRL file at `crl`. */
  revoke(cn: string): void
  /** An unrelated CA (made once), whose clients the main CA does not know. */
  otherCa(): { caCert: string; client(cn: string): ClientCert }
}

// Relative paths only: openssl runs with the CA's folder as its working directory, so no temp
// path ever has to survive openssl's config syntax ($ and # are special there).
const CONFIG = `
[ ca ]
default_ca = test_ca

[ test_ca ]
database = index.txt
serial = serial
crlnumber = crlnumber
new_certs_dir = issued
certificate = ca.pem
private_key = ca.key
default_md = sha256
default_days = 1
default_crl_days = 1
policy = policy_cn
unique_subject = no
copy_extensions = none
email_in_dn = no

[ policy_cn ]
commonName = supplied

[ req ]
distinguished_name = req_dn
utf8 = yes
string_mask = utf8only

[ req_dn ]

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

function openssl(cwd: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? ''
    throw new Error(`openssl ${args.join(' ')} failed in ${cwd}: ${stderr || String(err)}`, { cause: err })
  }
}

/** A subject with one CN, escaped for -subj (which splits on / and + and =). */
function subject(cn: string): string {
  if (cn.length === 0) throw new Error('a certificate needs a non-empty CN')
  return '/CN=' + cn.replace(/[\\/+=]/g, (c) => '\\' + c)
}

interface Ca {
  caCert: string
  crl: string
  issue(name: string, cn: string, extensions: 'server' | 'client'): ClientCert
  revoke(cert: string): void
}

function makeCa(dir: string, cn: string): Ca {
  mkdirSync(join(dir, 'issued'), { recursive: true })
  writeFileSync(join(dir, 'ca.cnf'), CONFIG)
  writeFileSync(join(dir, 'index.txt'), '')
  writeFileSync(join(dir, 'index.txt.attr'), 'unique_subject = no\n')
  writeFileSync(join(dir, 'serial'), '1000\n')
  writeFileSync(join(dir, 'crlnumber'), '1000\n')
  const self = ['-x509', '-extensions', 'v3_ca', '-days', '2']
  openssl(dir, ['req', '-config', 'ca.cnf', ...self, ...EC_KEY, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', subject(cn)])
  const gencrl = (): void => openssl(dir, ['ca', '-config', 'ca.cnf', '-gencrl', '-out', 'crl.pem'])
  gencrl()
  return {
    caCert: join(dir, 'ca.pem'),
    crl: join(dir, 'crl.pem'),
    issue(name, certCn, extensions) {
      openssl(dir, ['req', '-config', 'ca.cnf', '-new', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject(certCn)])
      openssl(dir, ['ca', '-config', 'ca.cnf', '-batch', '-notext', '-extensions', extensions, '-in', `${name}.csr`, '-out', `${name}.pem`])
      return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) }
    },
    revoke(cert) {
      openssl(dir, ['ca', '-config', 'ca.cnf', '-revoke', cert])
      gencrl()
    }
  }
}

/** Clients of one CA by CN, each issued on first use; file names are numbered, CNs may be anything. */
function clients(ca: Ca): { issued: Map<string, ClientCert>; client: (cn: string) => ClientCert } {
  const issued = new Map<string, ClientCert>()
  const client = (cn: string): ClientCert => {
    let c = issued.get(cn)
    if (!c) {
      c = ca.issue(`client-${issued.size + 1}`, cn, 'client')
      issued.set(cn, c)
    }
    return c
  }
  return { issued, client }
}

/** Makes a CA, a server certificate and an empty CRL in `dir` (an existing, empty folder). */
export function makeTestPki(dir: string): TestPki {
  const ca = makeCa(join(dir, 'ca'), 'Culex Test CA')
  const server = ca.issue('server', 'localhost', 'server')
  const { issued, client } = clients(ca)
  let other: ReturnType<TestPki['otherCa']> | undefined
  return {
    dir,
    caCert: ca.caCert,
    serverCert: server.cert,
    serverKey: server.key,
    crl: ca.crl,
    client,
    revoke(cn) {
      // a typo in a test must not pass as a revocation
      const c = issued.get(cn)
      if (!c) throw new Error(`no client certificate issued for CN ${cn}`)
      ca.revoke(c.cert)
    },
    otherCa() {
      if (!other) {
        const otherCa = makeCa(join(dir, 'other-ca'), 'Culex Other Test CA')
        other = { caCert: otherCa.caCert, client: clients(otherCa).client }
      }
      return other
    }
  }
}
