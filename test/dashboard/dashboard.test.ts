import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { MqttClient } from 'mqtt'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { Culex } from '../bridges/e2e.js'
import { CLI, GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connect, connectWithInbox } from '../helpers/mqtt.js'

// The web dashboard in headless Chromium (Debian's chromium, driven by playwright-core; no
// browser download), against real gateway processes: the page's files and their refusals, the
// live topic tree fed by a TCP client, publishing from the form, kicking a client, a consumer
// group's lag, bridges, and logging in when the API requires credentials. Screenshots go to
// test/artifacts/ (ignored by git) and the README's to docs/dashboard.png.

const ROOT = resolve(import.meta.dirname, '../..')
const ARTIFACTS = join(ROOT, 'test', 'artifacts')
const CHROMIUM = '/usr/bin/chromium'
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
]

interface Browser {
  context: BrowserContext
  page: Page
  dir: string
  errors: string[]
}

async function openBrowser(): Promise<Browser> {
  // a fresh profile each time (launchPersistentContext passes it as --user-data-dir)
  const dir = mkdtempSync(join(tmpdir(), 'culex-chromium-'))
  const context = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, args: ARGS, headless: true, viewport: { width: 1280, height: 1000 } })
  const page = context.pages()[0] ?? (await context.newPage())
  const errors: string[] = []
  page.on('pageerror', (err) => errors.push(err.message))
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text())
  })
  return { context, page, dir, errors }
}

async function closeBrowser(b: Browser | undefined): Promise<void> {
  if (!b) return
  await b.context.close()
  rmSync(b.dir, { recursive: true, force: true })
}

/** A raw GET with the path exactly as given (fetch would resolve ../ and %2e%2e itself). */
function rawGet(
  port: number,
  path: string,
  headers: Record<string, string> = {}
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((res, rej) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers }, (r) => {
      let body = ''
      r.setEncoding('utf8')
      r.on('data', (d: string) => (body += d))
      r.on('end', () => res({ status: r.statusCode ?? 0, headers: r.headers, body }))
    })
    req.on('error', rej)
    req.end()
  })
}

/** A port nothing listens on (the webhook bridge's target, so it retries). */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((r) => server.close(() => r()))
  return port
}

async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: join(ARTIFACTS, name), fullPage: true })
}

describe('the dashboard against an anonymous gateway', () => {
  let culex: Culex
  let browser: Browser | undefined
  const clients: MqttClient[] = []

  beforeAll(async () => {
    culex = await Culex.start({
      streams: { 'telemetry': { partitions: 2 }, 'telemetry.dlq': { partitions: 1 } },
      routes: [{ filter: 'dev/#', stream: 'telemetry' }],
      bridges: [
        {
          name: 'to-hook',
          kind: 'webhook',
          direction: 'out',
          streams: ['telemetry'],
          retry: { initial: '200ms', max: '1s' },
          target: { url: `http://127.0.0.1:${await closedPort()}/hook` }
        }
      ]
    })
    browser = await openBrowser()
  }, 30_000)

  afterAll(async () => {
    await closeAll(...clients)
    await closeBrowser(browser)
    await culex?.dispose()
  })

  it('serves the page, its files and the vendor bundles with their content types and cache headers, without credentials', async () => {
    const port = culex.gw.port('admin')
    const page = await rawGet(port, '/')
    expect(page.status).toBe(200)
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(page.headers['cache-control']).toBe('no-cache')
    expect(page.headers['content-security-policy']).toContain("default-src 'self'")
    expect(page.body).toContain('<script type="module" src="/dashboard/app.js">')
    const etag = String(page.headers.etag)
    expect(etag).toMatch(/^".+"$/)
    expect((await rawGet(port, '/', { 'if-none-match': etag })).status).toBe(304)

    const expected: Array<[string, string, string]> = [
      ['/dashboard/app.js', 'text/javascript; charset=utf-8', 'no-cache'],
      ['/dashboard/style.css', 'text/css; charset=utf-8', 'no-cache'],
      ['/dashboard/index.html', 'text/html; charset=utf-8', 'no-cache'],
      ['/dashboard/vendor/mqtt.esm.js', 'text/javascript; charset=utf-8', 'public, max-age=86400'],
      ['/dashboard/vendor/uPlot.esm.js', 'text/javascript; charset=utf-8', 'public, max-age=86400'],
      ['/dashboard/vendor/uPlot.min.css', 'text/css; charset=utf-8', 'public, max-age=86400']
    ]
    for (const [path, type, cache] of expected) {
      const r = await rawGet(port, path)
      expect(r.status, path).toBe(200)
      expect(r.headers['content-type'], path).toBe(type)
      expect(r.headers['cache-control'], path).toBe(cache)
      expect(r.headers['x-content-type-options'], path).toBe('nosniff')
    }
    expect((await rawGet(port, '/dashboard/vendor/mqtt.esm.js')).body).toBe(readFileSync(join(ROOT, 'node_modules/mqtt/dist/mqtt.esm.js'), 'utf8'))
  })

  it('answers 404 to paths outside its files: ../, encoded dots and slashes, backslashes, NUL, unknown names', async () => {
    const port = culex.gw.port('admin')
    const paths = [
      '/dashboard/../../package.json',
      '/dashboard/../package.json',
      '/dashboard/%2e%2e/%2e%2e/package.json',
      '/dashboard/%2E%2E/%2E%2E/package.json',
      '/dashboard/..%2f..%2fpackage.json',
      '/dashboard/..%2F..%2F..%2Fpackage.json',
      '/dashboard/.%2e/.%2e/package.json',
      '/dashboard/vendor/..%2f..%2f..%2fpackage.json',
      '/dashboard/vendor/../../../../package.json',
      '/dashboard/..%5c..%5cpackage.json',
      '/dashboard/%252e%252e/%252e%252e/package.json',
      '/dashboard/app.js%00.html',
      '/dashboard/vendor/mqtt.js',
      '/dashboard/vendor/',
      '/dashboard/',
      '/dashboard/constructor',
      '/dashboard/__proto__',
      '/dashboard/src/dashboard/static/app.js',
      '/package.json',
      '/dashboard//etc/passwd'
    ]
    for (const path of paths) {
      const r = await rawGet(port, path)
      expect(r.status, path).toBe(404)
      expect(r.body, path).not.toContain('"name": "culex"')
      expect(r.body, path).not.toContain('"dependencies"')
    }
    // the not-found answer of the API is still JSON
    const api = await rawGet(port, '/api/v1/no-such-thing')
    expect(api.status).toBe(404)
    expect(api.headers['content-type']).toContain('application/json')
    expect(JSON.parse(api.body)).toMatchObject({ error: 'NOT_FOUND' })
  })

  it('tells the page where the WebSocket listener is', async () => {
    const r = await culex.call<{ mqtt: { port: number; path: string } }>('GET', '/api/v1/dashboard')
    expect(r.status).toBe(200)
    expect(r.body).toEqual({ mqtt: { port: culex.gw.port('ws'), path: '/mqtt' } })
  })

  it('shows a message published over TCP in the topic tree', async () => {
    const { page, errors } = browser as Browser
    await page.goto(`${culex.api}/`)
    await page.getByTestId('mqtt-state').filter({ hasText: 'connected' }).waitFor({ timeout: 10_000 })
    await expect.poll(() => page.getByTestId('api-state').textContent(), { timeout: 10_000 }).toBe('connected')
    const device = await connect(culex.mqttUrl, { clientId: 'sensor-d1' })
    clients.push(device)
    await device.publishAsync('dev/d1/temp', '21.5', { qos: 1 })
    await device.publishAsync('dev/d2/temp', '19.0', { qos: 1 })
    await device.publishAsync('home/kitchen/light', 'on', { qos: 0, retain: true })
    const leaf = page.locator('[data-testid="topic"][data-topic="dev/d1/temp"]')
    await leaf.waitFor({ timeout: 10_000 })
    await expect.poll(() => leaf.getByTestId('topic-value').textContent(), { timeout: 10_000 }).toBe('21.5')
    // a newer value replaces it
    await device.publishAsync('dev/d1/temp', '22.25', { qos: 1 })
    await expect.poll(() => leaf.getByTestId('topic-value').textContent(), { timeout: 10_000 }).toBe('22.25')
    // and the message viewer lists what matches its filter
    await page.getByTestId('viewer-filter').fill('dev/+/temp')
    await page.getByTestId('viewer-watch').click()
    await device.publishAsync('dev/d2/temp', '19.5', { qos: 1 })
    await device.publishAsync('home/kitchen/light', 'off', { qos: 0 })
    const shown = page.getByTestId('viewer-message')
    await shown.first().waitFor()
    await page.waitForTimeout(300)
    expect(await shown.count()).toBe(1)
    expect(await shown.first().getAttribute('data-topic')).toBe('dev/d2/temp')
    expect(errors).toEqual([])
  })

  it('publishes from the form, and an MQTT.js client receives it', async () => {
    const { page } = browser as Browser
    const [listener, inbox] = await connectWithInbox(culex.mqttUrl, { clientId: 'listener' })
    clients.push(listener)
    await listener.subscribeAsync('cmd/#', { qos: 1 })
    await page.getByTestId('publish-topic').fill('cmd/d1/fan')
    await page.getByTestId('publish-payload').fill('{"speed":3}')
    await page.getByTestId('publish-qos').selectOption('1')
    await page.getByTestId('publish-retain').check()
    await page.getByTestId('publish-submit').click()
    const [got] = await inbox.waitFor(1, 10_000)
    expect(got).toMatchObject({ topic: 'cmd/d1/fan', payload: '{"speed":3}', qos: 1, retain: false })
    await expect.poll(() => page.getByTestId('publish-result').textContent(), { timeout: 10_000 }).toContain('published to cmd/d1/fan')
    // retained: a client subscribing now gets it
    const late = await connectWithInbox(culex.mqttUrl, { clientId: 'late' })
    clients.push(late[0])
    await late[0].subscribeAsync('cmd/d1/fan', { qos: 1 })
    expect((await late[1].waitFor(1, 5000))[0]).toMatchObject({ payload: '{"speed":3}', retain: true })
  })

  it("shows a consumer group's lag, the streams, dead letters and bridges, and pauses and resumes a bridge", async () => {
    const { page } = browser as Browser
    // a group with a member that commits nothing, then records behind it
    const join = await culex.call<{ memberId: string }>('POST', '/api/v1/groups/billing/members', { streams: ['telemetry'], sessionTimeoutMs: 60_000 })
    expect(join.status).toBe(200)
    await culex.produce(
      'telemetry',
      Array.from({ length: 7 }, (_, i) => ({ key: `k${i}`, value: `v${i}` }))
    )
    const share = await culex.call('PUT', '/api/v1/shared-groups/jobs', { streams: ['telemetry'], lagAlert: 5 })
    expect(share.status).toBe(200)
    await culex.produce('telemetry.dlq', [{ key: null, value: 'refused' }])
    const lag = page.locator('[data-testid="group-row"][data-group="billing"] [data-testid="group-lag"]')
    // 7 produced + the 4 dev/... messages routed into the stream by the earlier test
    await expect.poll(() => lag.textContent(), { timeout: 10_000 }).toBe('11')
    const shared = page.locator('[data-testid="shared-row"][data-group="jobs"]')
    await expect.poll(() => shared.getByTestId('shared-lag').textContent(), { timeout: 10_000 }).toBe('11')
    await expect.poll(() => shared.textContent(), { timeout: 10_000 }).toContain('over its alert')
    await expect.poll(() => page.locator('[data-testid="stream-row"][data-stream="telemetry"]').count(), { timeout: 10_000 }).toBe(1)
    await expect
      .poll(() => page.locator('[data-testid="dlq-row"][data-stream="telemetry.dlq"] [data-testid="dlq-count"]').textContent(), { timeout: 10_000 })
      .toBe('1')

    const bridge = page.locator('[data-testid="bridge-row"][data-bridge="to-hook"]')
    await expect.poll(() => bridge.getByTestId('bridge-state').textContent(), { timeout: 10_000 }).toBe('retrying')
    await bridge.getByRole('button', { name: 'Pause bridge to-hook' }).click()
    await expect.poll(() => bridge.getByTestId('bridge-state').textContent(), { timeout: 10_000 }).toBe('paused')
    expect((await culex.bridge('to-hook')).state).toBe('paused')
    await bridge.getByRole('button', { name: 'Resume bridge to-hook' }).click()
    await expect.poll(async () => (await culex.bridge('to-hook')).state, { timeout: 10_000 }).not.toBe('paused')
  })

  it('kicks a client from the page', async () => {
    const { page } = browser as Browser
    const victim = await connect(culex.mqttUrl, { clientId: 'kick-me', keepalive: 30 })
    clients.push(victim)
    const closed = new Promise<void>((r) => victim.once('close', () => r()))
    const row = page.locator('[data-testid="client-row"][data-client="kick-me"]')
    await row.waitFor({ timeout: 10_000 })
    await row.getByRole('button', { name: 'Kick client kick-me' }).click()
    await closed
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(0)
  })

  it('draws the charts and saves screenshots', async () => {
    const { page, errors } = browser as Browser
    // a little traffic over a few samples, so the charts have lines
    const device = clients[0] as MqttClient
    for (let i = 0; i < 4; i++) {
      await device.publishAsync(`dev/d${i % 3}/temp`, String(20 + i), { qos: 1 })
      await page.waitForTimeout(600)
    }
    for (const id of ['chart-rate', 'chart-connections', 'chart-lag']) {
      await expect.poll(() => page.getByTestId(id).locator('canvas').count(), { timeout: 10_000 }).toBe(1)
    }
    await page.getByTestId('viewer-filter').fill('#')
    await page.getByTestId('viewer-watch').click()
    await device.publishAsync('dev/d1/humidity', '48', { qos: 0 })
    await page.waitForTimeout(2500)
    await screenshot(page, 'dashboard.png')
    // the README's screenshot is a tracked file: rewritten only when asked for
    if (process.env.CULEX_UPDATE_SCREENSHOT === '1') await page.screenshot({ path: join(ROOT, 'docs', 'dashboard.png'), fullPage: true })
    expect(errors).toEqual([])
  })

  it('says "not available" in a panel whose endpoint answers 404, and goes on with the others', async () => {
    const { page } = browser as Browser
    await page.route('**/api/v1/clients*', (route) =>
      route.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ error: 'NOT_FOUND', message: 'no route GET /api/v1/clients' }) })
    )
    try {
      await page.reload()
      await page.getByTestId('clients').getByTestId('not-available').waitFor({ timeout: 10_000 })
      expect(await page.getByTestId('clients').textContent()).toBe('Not available on this gateway.')
      await page.locator('[data-testid="group-row"][data-group="billing"]').waitFor({ timeout: 10_000 })
      await page.getByTestId('mqtt-state').filter({ hasText: 'connected' }).waitFor({ timeout: 10_000 })
    } finally {
      await page.unroute('**/api/v1/clients*')
    }
  })

  it('keeps at most 2,000 topics in the tree, dropping the least recently updated', async () => {
    const { page } = browser as Browser
    const bulk = await connect(culex.mqttUrl, { clientId: 'bulk' })
    clients.push(bulk)
    const n = 2050
    for (let i = 0; i < n; i++) bulk.publish(`bulk/${i}`, String(i), { qos: 0 })
    await bulk.publishAsync('bulk/last', 'done', { qos: 1 })
    await page.locator('[data-testid="topic"][data-topic="bulk/last"]').waitFor({ timeout: 10_000 })
    await expect.poll(() => page.getByTestId('topic-count').textContent(), { timeout: 10_000 }).toMatch(/^2000 topics, \d+ dropped \(at most 2000 kept\)$/)
    expect(await page.locator('[data-testid="topic"][data-topic="bulk/2049"]').count()).toBe(1)
    expect(await page.locator('[data-testid="topic"][data-topic="bulk/0"]').count()).toBe(0)
  })
})

describe('the dashboard when the API requires credentials', () => {
  let gw: GatewayProcess
  let dataDir: string
  let browser: Browser | undefined
  let token = ''

  beforeAll(async () => {
    dataDir = tempDataDir('culex-dashboard-auth')
    const passwords = join(dataDir, '..', `${dataDir.split('/').pop() ?? 'culex'}.passwords`)
    const made = spawnSync(process.execPath, [CLI, 'passwd', '-c', passwords, 'ops'], { input: 'sesame-ops\n', encoding: 'utf8', timeout: 20_000 })
    expect(made.status, made.stderr).toBe(0)
    const made2 = spawnSync(process.execPath, [CLI, 'token', 'ops'], { encoding: 'utf8', timeout: 20_000 })
    expect(made2.status, made2.stderr).toBe(0)
    token = /token: (\S+)/.exec(made2.stdout)![1]!
    const hash = /ops: '([^']+)'/.exec(made2.stdout)![1]!
    const config = join(dataDir, 'culex.yaml')
    writeFileSync(config, stringify({ 'password-file': passwords, 'api-tokens': { ops: hash } }))
    gw = await GatewayProcess.start(dataDir, ['--config', config])
    browser = await openBrowser()
  }, 30_000)

  afterAll(async () => {
    await closeBrowser(browser)
    await gw?.stop()
    const passwords = join(dataDir, '..', `${dataDir.split('/').pop() ?? 'culex'}.passwords`)
    rmSync(passwords, { force: true })
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('serves the files without credentials, and the API only with them', async () => {
    const port = gw.port('admin')
    expect((await rawGet(port, '/')).status).toBe(200)
    expect((await rawGet(port, '/dashboard/app.js')).status).toBe(200)
    expect((await rawGet(port, '/dashboard/../../package.json')).status).toBe(404)
    expect((await rawGet(port, '/api/v1/dashboard')).status).toBe(401)
    expect((await rawGet(port, '/api/v1/streams')).status).toBe(401)
  })

  it('shows the login form, refuses a wrong password, and logs in for the API and MQTT', async () => {
    const { page, errors } = browser as Browser
    await page.goto(`${gw.api}/`)
    await page.getByTestId('login').waitFor({ state: 'visible', timeout: 10_000 })
    expect(await page.getByTestId('mqtt-state').textContent()).toBe('waiting for login')
    await screenshot(page, 'dashboard-login.png')

    await page.getByLabel('User').fill('ops')
    await page.getByLabel('Password').fill('wrong')
    await page.getByTestId('login-submit').click()
    await expect.poll(() => page.getByTestId('login-error').textContent(), { timeout: 10_000 }).toContain('wrong user name or password')
    expect(await page.getByTestId('login').isVisible()).toBe(true)

    await page.getByLabel('Password').fill('sesame-ops')
    await page.getByTestId('login-submit').click()
    await page.getByTestId('login').waitFor({ state: 'hidden', timeout: 10_000 })
    await page.getByTestId('mqtt-state').filter({ hasText: 'connected' }).waitFor({ timeout: 10_000 })
    await expect.poll(() => page.getByTestId('api-state').textContent(), { timeout: 10_000 }).toBe('connected')
    expect(await page.getByTestId('streams').textContent()).not.toContain('Error')

    // the page's MQTT connection is the user's: a message from an authenticated client shows up
    const device = await connect(gw.url('mqtt'), { clientId: 'auth-d1', username: 'ops', password: 'sesame-ops' })
    try {
      await device.publishAsync('site/door', 'open', { qos: 1 })
      await page.locator('[data-testid="topic"][data-topic="site/door"]').waitFor({ timeout: 10_000 })
    } finally {
      await closeAll(device)
    }
    await screenshot(page, 'dashboard-logged-in.png')
    // the 401 of the first, credential-less load is the only console error
    expect(errors.filter((e) => !e.includes('401'))).toEqual([])
  })
  it('logs in with an API token (Bearer) after logging out; MQTT then connects as an anonymous client, which this gateway refuses', async () => {
    const { page } = browser as Browser
    await page.getByTestId('logout').click()
    await page.getByTestId('login').waitFor({ state: 'visible', timeout: 10_000 })
    await page.getByLabel('API token').fill('culex_ops_not-the-secret')
    await page.getByTestId('login-submit').click()
    await expect.poll(() => page.getByTestId('login-error').textContent(), { timeout: 10_000 }).toContain('bearer token is not valid')
    await page.getByLabel('API token').fill(token)
    await page.getByTestId('login-submit').click()
    await page.getByTestId('login').waitFor({ state: 'hidden', timeout: 10_000 })
    await expect.poll(() => page.getByTestId('api-state').textContent(), { timeout: 10_000 }).toBe('connected')
    await expect.poll(() => page.getByTestId('who').textContent(), { timeout: 10_000 }).toBe('logged in as token')
    await expect.poll(() => page.getByTestId('mqtt-state').textContent(), { timeout: 10_000 }).toMatch(/^error: /)
  })
})
