import { createHmac, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { Socket } from 'node:net'

// The webhook bridge's target: a real HTTP server on 127.0.0.1 (node:http), written for the tests.
// It records every request, deduplicates by Idempotency-Key as a receiver should, and answers as
// a test tells it to (2xx, an error status, a Retry-After, no answer at all, a dropped connection).
// stop() then start() again is an outage of the receiver on the same port.

/** One record of a webhook body, as the bridge encodes it (src/bridges/webhook/sink.ts). */
export interface WebhookRecord {
  id: string
  stream: string
  partition: number
  offset: number
  timestamp: string
  key: string | null
  topic: string | null
  headers: Record<string, string>
  clientId: string | null
  encoding: 'utf-8' | 'base64'
  value: string
}

export interface WebhookRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  /** The exact bytes of the body (what the signature covers). */
  body: Buffer
  records: WebhookRecord[]
  idempotencyKey: string
  receivedAt: number
}

/**
 * What the receiver does with a request: answer, never answer, drop the connection, or take the
 * records and then drop the connection (the receiver processed them but its answer was lost).
 * `after` runs once the answer was written.
 */
export type Reply =
  { status: number; headers?: Record<string, string>; body?: string; delayMs?: number; after?: () => void } | 'hang' | 'drop' | 'take-and-drop'

/**
 * Verifies `Culex-Signature: t=<unix seconds>,v1=<hex>` over the raw body: the HMAC-SHA256 with
 * the shared secret of "<t>.<body>", compared in constant time, and t within `toleranceSeconds`
 * of now (a replayed request is refused). The same function is in the README.
 */
export function verifyCulexSignature(
  secret: string,
  header: string | undefined,
  rawBody: Buffer,
  toleranceSeconds = 300,
  nowSeconds = Math.floor(Date.now() / 1000)
): boolean {
  if (header === undefined) return false
  let t = NaN
  const candidates: Buffer[] = []
  for (const part of header.split(',')) {
    const [name, value] = part.split('=', 2)
    if (name === 't') t = Number(value)
    else if (name === 'v1' && value !== undefined && /^[0-9a-f]{64}$/.test(value)) candidates.push(Buffer.from(value, 'hex'))
  }
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds) return false
  const expected = createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest()
  return candidates.some((c) => timingSafeEqual(c, expected))
}

export class WebhookReceiver {
  readonly requests: WebhookRequest[] = []
  /** Records taken (answered 2xx), in arrival order, without the duplicates. */
  readonly accepted: WebhookRecord[] = []
  /** Every record of every request answered 2xx, in arrival order, duplicates included. */
  readonly answered: WebhookRecord[] = []
  /** When set, each request's Culex-Signature is checked with it; failures are counted. */
  secret: string | null = null
  badSignatures = 0
  /** Requests answered 2xx whose Idempotency-Key had been answered 2xx before. */
  duplicateRequests = 0
  /** Records answered 2xx whose id (stream/partition/offset) had been taken before. */
  duplicateRecords = 0
  /** Decides the answer to each request; 200 by default. */
  reply: (req: WebhookRequest) => Reply = () => ({ status: 200 })

  private readonly seenKeys = new Set<string>()
  private readonly seenIds = new Set<string>()
  private server: Server | null = null
  private readonly sockets = new Set<Socket>()
  private listeners: ((req: WebhookRequest) => void)[] = []
  port = 0

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`
  }

  /** Listens on `port` (0: a free one the first time; the same one after a stop). */
  async start(port = this.port): Promise<void> {
    if (this.server) throw new Error('webhook receiver already running')
    const server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const body = Buffer.concat(chunks)
        let records: WebhookRecord[] = []
        try {
          records = (JSON.parse(body.toString('utf8')) as { records: WebhookRecord[] }).records
        } catch {
          // not JSON: kept as a request with no records
        }
        const request: WebhookRequest = {
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          body,
          records,
          idempotencyKey: String(req.headers['idempotency-key'] ?? ''),
          receivedAt: Date.now()
        }
        this.requests.push(request)
        if (this.secret !== null && !verifyCulexSignature(this.secret, req.headers['culex-signature'] as string | undefined, body)) this.badSignatures++
        for (const l of this.listeners) l(request)
        const reply = this.reply(request)
        if (reply === 'hang') return
        if (reply === 'drop' || reply === 'take-and-drop') {
          if (reply === 'take-and-drop') this.take(request)
          req.socket.destroy()
          return
        }
        const answer = (): void => {
          if (reply.status >= 200 && reply.status < 300) this.take(request)
          res.writeHead(reply.status, reply.headers ?? {})
          res.end(reply.body ?? '', reply.after)
        }
        if (reply.delayMs) setTimeout(answer, reply.delayMs)
        else answer()
      })
    })
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket)
      socket.once('close', () => this.sockets.delete(socket))
    })
    await new Promise<void>((res, rej) => {
      server.once('error', rej)
      server.listen(port, '127.0.0.1', () => res())
    })
    const address = server.address()
    if (address === null || typeof address === 'string') throw new Error('no port')
    this.port = address.port
    this.server = server
  }

  /** Closes the port and every open connection at once (requests in flight get no answer). */
  async stop(): Promise<void> {
    const server = this.server
    if (!server) return
    this.server = null
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((res) => server.close(() => res()))
  }

  /** Resolves with the next request that satisfies `test`, or rejects after `timeoutMs`. */
  next(test: (req: WebhookRequest) => boolean = () => true, timeoutMs = 5000): Promise<WebhookRequest> {
    return new Promise((res, rej) => {
      const listener = (req: WebhookRequest): void => {
        if (!test(req)) return
        clearTimeout(timer)
        this.listeners = this.listeners.filter((l) => l !== listener)
        res(req)
      }
      const timer = setTimeout(() => {
        this.listeners = this.listeners.filter((l) => l !== listener)
        rej(new Error(`no webhook request within ${timeoutMs} ms`))
      }, timeoutMs)
      this.listeners.push(listener)
    })
  }

  reset(): void {
    this.requests.length = 0
    this.accepted.length = 0
    this.answered.length = 0
    this.badSignatures = 0
    this.seenKeys.clear()
    this.seenIds.clear()
    this.duplicateRequests = 0
    this.duplicateRecords = 0
    this.reply = () => ({ status: 200 })
  }

  /** A receiver's dedup: a repeated Idempotency-Key is answered 2xx and not processed again. */
  private take(request: WebhookRequest): void {
    this.answered.push(...request.records)
    if (this.seenKeys.has(request.idempotencyKey)) {
      this.duplicateRequests++
      return
    }
    this.seenKeys.add(request.idempotencyKey)
    for (const r of request.records) {
      if (this.seenIds.has(r.id)) {
        this.duplicateRecords++
        continue
      }
      this.seenIds.add(r.id)
      this.accepted.push(r)
    }
  }
}
