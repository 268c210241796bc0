import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ApiError } from '../errors.js'

// The web dashboard: static files (src/dashboard/static/, no build step) at / and /dashboard/...,
// the browser bundles of MQTT.js and uPlot straight from node_modules at /dashboard/vendor/..., and
// GET /api/v1/dashboard, which tells the page where the MQTT-over-WebSocket listener is.
// The static files hold no data, so they need no credentials (route config `anonymous`, as the
// probes have: src/http/auth.ts); every API call the page makes, and its MQTT connection, does.
// Only files named in a fixed table are served: a request path is a key into it, never a path on
// disk, so nothing outside these files can be reached (../, %2e%2e, %2f, backslashes: all 404).

/** The MQTT-over-WebSocket listener the page connects to (on the hostname it was loaded from). */
export interface DashboardEndpoint {
  port: number
  path: string
}

export interface DashboardOptions {
  /** The WebSocket listener, known once the listeners are up; null while unknown or when it is off. */
  websocket: () => DashboardEndpoint | null
}

/** GET /api/v1/dashboard */
export interface DashboardConfig {
  /** null: no plain WebSocket listener, so the live views are not available. */
  mqtt: DashboardEndpoint | null
}

interface StaticFile {
  path: string
  type: string
  /** Vendor files change only with an npm install: cached for a day; the page's own files are revalidated. */
  immutable: boolean
  body?: Buffer
  etag?: string
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon'
}

/** The package root: the nearest folder above this module holding src/dashboard/static (src/ under vitest, dist/src/ once built). */
export function packageRoot(from: string = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'src', 'dashboard', 'static', 'index.html'))) return dir
    if (dirname(dir) === dir) throw new Error(`dashboard: no src/dashboard/static/index.html above ${from}`)
  }
}

function typeOf(name: string): string | null {
  const dot = name.lastIndexOf('.')
  return dot < 0 ? null : (TYPES[name.slice(dot)] ?? null)
}

/** URL path under /dashboard/ -> file. */
export function dashboardFiles(root: string = packageRoot()): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>()
  const staticDir = join(root, 'src', 'dashboard', 'static')
  for (const name of readdirSync(staticDir)) {
    const type = typeOf(name)
    if (type !== null) files.set(name, { path: join(staticDir, name), type, immutable: false })
  }
  const vendor: Array<[string, string]> = [
    ['vendor/mqtt.esm.js', join(root, 'node_modules', 'mqtt', 'dist', 'mqtt.esm.js')],
    ['vendor/uPlot.esm.js', join(root, 'node_modules', 'uplot', 'dist', 'uPlot.esm.js')],
    ['vendor/uPlot.min.css', join(root, 'node_modules', 'uplot', 'dist', 'uPlot.min.css')]
  ]
  for (const [name, path] of vendor) files.set(name, { path, type: typeOf(name) ?? 'application/octet-stream', immutable: true })
  return files
}

function send(request: FastifyRequest, reply: FastifyReply, file: StaticFile | undefined): FastifyReply {
  if (file === undefined) throw new ApiError(404, 'NOT_FOUND', `no dashboard file ${request.url.split('?')[0]}`)
  if (file.body === undefined) {
    try {
      file.body = readFileSync(file.path)
    } catch {
      throw new ApiError(404, 'NOT_FOUND', `dashboard file ${request.url.split('?')[0]} is missing from this installation`)
    }
    file.etag = `"${createHash('sha1').update(file.body).digest('base64url')}"`
  }
  void reply
    .header('content-type', file.type)
    .header('cache-control', file.immutable ? 'public, max-age=86400' : 'no-cache')
    .header('etag', file.etag)
    .header('x-content-type-options', 'nosniff')
  if (request.headers['if-none-match'] === file.etag) return reply.code(304).send()
  if (file.type.startsWith('text/html')) {
    // the page loads scripts and styles from itself only, and talks to this server and its WebSocket listener
    void reply
      .header(
        'content-security-policy',
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
      )
      .header('referrer-policy', 'no-referrer')
  }
  return reply.send(file.body)
}

/** The static files, served without credentials (they hold no data). */
export function dashboardStaticRoutes(app: FastifyInstance, files: Map<string, StaticFile> = dashboardFiles()): void {
  const open = { config: { anonymous: true } }
  app.get('/', open, (request, reply) => send(request, reply, files.get('index.html')))
  app.get('/dashboard', open, (_request, reply) => reply.redirect('/', 302))
  app.get<{ Params: { '*': string } }>('/dashboard/*', open, (request, reply) => {
    // a key into the table (a Map: no inherited names), never a path on disk
    return send(request, reply, files.get(request.params['*']))
  })
}

/** GET /api/v1/dashboard: behind the authentication hook like every /api route (the page's login check). */
export function dashboardRoutes(app: FastifyInstance, options: DashboardOptions): void {
  app.get('/api/v1/dashboard', (): DashboardConfig => ({ mqtt: options.websocket() }))
}
