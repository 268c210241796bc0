// The Culex dashboard: plain ES modules, no build step. Live data over MQTT (MQTT.js over the
// gateway's WebSocket listener), everything else from the HTTP API, polled every few seconds.
// Credentials (asked for when the API answers 401) stay in this tab's memory only: they go to the
// API as HTTP Basic or Bearer and to MQTT as user name and password.
/* global document, location, window, Node */ // a browser module (eslint.config.js sets Node's globals for .js)
import mqtt from '/dashboard/vendor/mqtt.esm.js'
import uPlot from '/dashboard/vendor/uPlot.esm.js'

const MAX_TOPICS = 2000 // topics the tree keeps; past it the least recently updated one goes
const MAX_VIEWER = 200 // messages the viewer keeps
const MAX_SHOWN = 300 // bytes of a payload shown
const SAMPLE_MS = 2000 // API poll and chart sample period
const WINDOW_S = 300 // charts show the last five minutes

const $ = (id) => document.getElementById(id)

/** An element with attributes and children (strings become text: nothing is parsed as HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else if (k === 'dataset') Object.assign(el.dataset, v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : String(c))
  return el
}

// ---- credentials and the API --------------------------------------------------------------

/** null, { user, password } or { token } */
let credentials = null

function authHeader() {
  if (credentials === null) return {}
  if (credentials.token) return { authorization: `Bearer ${credentials.token}` }
  const bytes = new TextEncoder().encode(`${credentials.user}:${credentials.password}`)
  return { authorization: `Basic ${btoa(String.fromCharCode(...bytes))}` }
}

class Unauthorized extends Error {}

/** fetch against the API; 401 shows the login form. Answers { status, body }. */
async function api(method, path, body) {
  const headers = { ...authHeader() }
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await res.text()
  let parsed
  try {
    parsed = text ? JSON.parse(text) : null
  } catch {
    parsed = { message: text }
  }
  if (res.status === 401) {
    showLogin(parsed?.message ?? 'credentials are required')
    throw new Unauthorized(parsed?.message)
  }
  return { status: res.status, body: parsed }
}

function showLogin(message) {
  $('login').hidden = false
  $('api-state').textContent = 'login required'
  if (client === null) $('mqtt-state').textContent = 'waiting for login'
  $('login-error').textContent = credentials === null ? '' : message
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const form = new FormData(e.target)
  const token = String(form.get('token') ?? '').trim()
  credentials = token ? { token } : { user: String(form.get('user') ?? ''), password: String(form.get('password') ?? '') }
  void start()
})

$('logout').addEventListener('click', () => {
  credentials = null
  location.reload()
})

// ---- MQTT: topic tree and message viewer -----------------------------------------------------

let client = null
const topics = new Map() // topic -> { text, bytes, qos, retain, at, count }; least recently updated first
const sys = new Map() // $SYS topic -> number
let seen = 0 // messages this page received (outside $SYS)
let dropped = 0
let viewerFilter = '#'
let extraSub = null

function payloadText(payload) {
  const bytes = payload.length
  const head = payload.subarray(0, MAX_SHOWN)
  let text
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(head)
  } catch {
    text = `${bytes} bytes (binary) ${Array.from(head.subarray(0, 24), (b) => b.toString(16).padStart(2, '0')).join(' ')}`
  }
  return bytes > MAX_SHOWN ? `${text}… (${bytes} bytes)` : text
}

/** MQTT topic filter matching ($-topics only by filters that name their first level). */
function matches(filter, topic) {
  const f = filter.split('/')
  const t = topic.split('/')
  if (topic.startsWith('$') && (f[0] === '#' || f[0] === '+')) return false
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true
    if (i >= t.length) return false
    if (f[i] !== '+' && f[i] !== t[i]) return false
  }
  return f.length === t.length
}

function onMessage(topic, payload, packet) {
  const text = payloadText(payload)
  const prev = topics.get(topic)
  if (prev) topics.delete(topic)
  else if (topics.size >= MAX_TOPICS) {
    topics.delete(topics.keys().next().value)
    dropped++
  }
  topics.set(topic, { text, bytes: payload.length, qos: packet.qos, retain: packet.retain, at: new Date(), count: (prev?.count ?? 0) + 1 })
  if (topic.startsWith('$SYS/')) {
    const n = Number(text)
    if (text !== '' && Number.isFinite(n)) sys.set(topic, n)
  } else if (!packet.retain) seen++
  if (matches(viewerFilter, topic)) addToViewer(topic, text, packet)
  scheduleTree()
}

function addToViewer(topic, text, packet) {
  const list = $('viewer')
  const flags = `QoS ${packet.qos}${packet.retain ? ', retained' : ''}`
  list.prepend(
    h(
      'li',
      { 'data-testid': 'viewer-message', 'dataset': { topic } },
      h('time', {}, new Date().toLocaleTimeString()),
      ' ',
      h('strong', {}, topic),
      ' ',
      h('span', { class: 'hint' }, flags),
      h('pre', {}, text)
    )
  )
  while (list.children.length > MAX_VIEWER) list.lastElementChild.remove()
}

$('viewer-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const filter = String(new FormData(e.target).get('filter') ?? '').trim() || '#'
  viewerFilter = filter
  $('viewer').replaceChildren()
  // `#` does not reach $-topics: a filter on them gets its own subscription
  if (extraSub !== null && client) client.unsubscribe(extraSub)
  extraSub = filter.startsWith('$') && !filter.startsWith('$SYS/') ? filter : null
  if (extraSub !== null && client) client.subscribe(extraSub, { qos: 0 })
})
$('viewer-clear').addEventListener('click', () => $('viewer').replaceChildren())

// the tree is rebuilt at most four times a second
let treeTimer = null
const collapsed = new Set(['$SYS']) // $SYS starts folded: it would fill the tree
function scheduleTree() {
  treeTimer ??= setTimeout(() => {
    treeTimer = null
    renderTree()
  }, 250)
}
$('tree-find').addEventListener('input', scheduleTree)

function renderTree() {
  const find = $('tree-find').value.trim()
  const root = new Map()
  for (const [topic, value] of topics) {
    if (find && !topic.includes(find)) continue
    let level = root
    const parts = topic.split('/')
    parts.forEach((part, i) => {
      let node = level.get(part)
      if (!node) level.set(part, (node = { children: new Map(), value: null, path: parts.slice(0, i + 1).join('/') }))
      if (i === parts.length - 1) node.value = value
      level = node.children
    })
  }
  const list = (level, depth) =>
    h(
      'ul',
      { role: depth === 0 ? undefined : 'group' },
      [...level.entries()]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([name, node]) => {
          const value = node.value
            ? h(
                'span',
                {
                  'class': 'value',
                  'data-testid': 'topic-value',
                  'title': `${node.value.count} messages, last at ${node.value.at.toLocaleTimeString()}, QoS ${node.value.qos}${node.value.retain ? ', retained' : ''}`
                },
                node.value.text
              )
            : null
          const label = h('span', { class: 'level' }, name === '' ? '(empty)' : name)
          if (node.children.size === 0) {
            return h('li', { 'role': 'treeitem', 'data-testid': 'topic', 'dataset': { topic: node.path } }, label, ' ', value)
          }
          const details = h(
            'details',
            { open: !collapsed.has(node.path) },
            h('summary', {}, label, ` (${node.children.size}) `, value),
            list(node.children, depth + 1)
          )
          details.addEventListener('toggle', () => (details.open ? collapsed.delete(node.path) : collapsed.add(node.path)))
          return h('li', { 'role': 'treeitem', 'data-testid': 'topic', 'dataset': { topic: node.path }, 'aria-expanded': String(details.open) }, details)
        })
    )
  $('topic-tree').replaceChildren(topics.size === 0 ? h('p', { class: 'hint' }, 'No messages yet.') : list(root, 0))
  $('topic-count').textContent = `${topics.size} topics${dropped ? `, ${dropped} dropped (at most ${MAX_TOPICS} kept)` : ''}`
}

function connectMqtt(endpoint) {
  if (client) client.end(true)
  if (endpoint === null) {
    $('mqtt-state').textContent = 'not available (no WebSocket listener)'
    return
  }
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
  const url = `${scheme}://${location.hostname}:${endpoint.port}${endpoint.path}`
  const options = { clientId: `culex-dashboard-${Math.random().toString(16).slice(2, 10)}`, clean: true, reconnectPeriod: 3000, connectTimeout: 10_000 }
  // an API token is no MQTT credential: with one, the page connects as an anonymous client
  if (credentials?.user) Object.assign(options, { username: credentials.user, password: credentials.password })
  client = mqtt.connect(url, options)
  const state = $('mqtt-state')
  client.on('connect', () => {
    state.textContent = 'connected'
    client.subscribe(['#', '$SYS/#'], { qos: 0 })
    if (extraSub !== null) client.subscribe(extraSub, { qos: 0 })
  })
  client.on('reconnect', () => (state.textContent = 'reconnecting'))
  client.on('close', () => {
    if (state.textContent === 'connected') state.textContent = 'disconnected'
  })
  client.on('error', (err) => (state.textContent = `error: ${err.message}`))
  client.on('message', onMessage)
}

$('publish-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const form = new FormData(e.target)
  const topic = String(form.get('topic') ?? '')
  const result = $('publish-result')
  if (!client || !client.connected) {
    result.textContent = 'not connected over MQTT'
    return
  }
  const opts = { qos: Number(form.get('qos')), retain: form.get('retain') === 'on' }
  client.publish(topic, String(form.get('payload') ?? ''), opts, (err) => {
    result.textContent = err ? `not published: ${err.message}` : `published to ${topic} at ${new Date().toLocaleTimeString()}`
  })
})

// ---- panels from the API ---------------------------------------------------------------------

function table(headers, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'hint' }, empty)
  return h(
    'table',
    {},
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        headers.map((x) => h('th', { scope: 'col' }, x))
      )
    ),
    h('tbody', {}, rows)
  )
}

function unavailable(status, body) {
  if (status === 404) return h('p', { 'class': 'hint', 'data-testid': 'not-available' }, 'Not available on this gateway.')
  if (status === 403) return h('p', { class: 'hint' }, `Not allowed: ${body?.message ?? 'forbidden'}`)
  return h('p', { class: 'error' }, `Error ${status}: ${body?.message ?? ''}`)
}

const num = (n) => (typeof n === 'number' ? n.toLocaleString('en') : '–')

/** GETs path and renders the panel; answers the body on 200, null otherwise. */
async function panel(id, path, render) {
  const el = $(id)
  try {
    const { status, body } = await api('GET', path)
    el.replaceChildren(status === 200 ? render(body) : unavailable(status, body))
    return status === 200 ? body : null
  } catch (err) {
    if (!(err instanceof Unauthorized)) el.replaceChildren(h('p', { class: 'error' }, `Not reachable: ${err.message}`))
    return null
  }
}

/** A GET for the charts only: the body on 200, else null. */
async function quiet(path) {
  try {
    const { status, body } = await api('GET', path)
    return status === 200 ? body : null
  } catch {
    return null
  }
}

async function action(button, method, path) {
  button.disabled = true
  try {
    const { status, body } = await api(method, path)
    if (status >= 400) alertIn(button, `${status}: ${body?.message ?? ''}`)
  } catch (err) {
    if (!(err instanceof Unauthorized)) alertIn(button, err.message)
  } finally {
    button.disabled = false
    void refresh()
  }
}

function alertIn(button, message) {
  button.after(h('span', { class: 'error', role: 'alert' }, ` ${message}`))
}

const PROTOCOLS = { 3: 'MQTT 3.1', 4: 'MQTT 3.1.1', 5: 'MQTT 5' }

function renderClients(body) {
  const list = body.clients ?? []
  const more = body.total > list.length ? h('p', { class: 'hint' }, `${list.length} of ${num(body.total)} shown.`) : null
  const rows = table(
    ['client id', 'user', 'address', 'protocol', 'keepalive', 'subscriptions', 'queued', ''],
    list.map((c) => {
      const id = c.id
      const subs = (c.subscriptions ?? []).map((s) => `${s.filter} (QoS ${s.qos})`).join(', ')
      return h(
        'tr',
        { 'data-testid': 'client-row', 'dataset': { client: id } },
        h('td', {}, id),
        h('td', {}, c.username ?? '(anonymous)'),
        h('td', {}, c.address ?? '–'),
        h('td', {}, `${PROTOCOLS[c.protocolVersion] ?? '–'}${c.listener ? ` over ${c.listener}` : ''}`),
        h('td', {}, c.keepalive === undefined ? '–' : `${c.keepalive} s`),
        h('td', {}, subs),
        h('td', {}, num(c.queued)),
        h(
          'td',
          {},
          h(
            'button',
            {
              'type': 'button',
              'data-testid': 'kick',
              'aria-label': `Kick client ${id}`,
              'onclick': (e) => action(e.target, 'DELETE', `/api/v1/clients/${encodeURIComponent(id)}`)
            },
            'Kick'
          )
        )
      )
    }),
    'No clients connected.'
  )
  return more ? h('div', {}, rows, more) : rows
}

function renderStreams(body) {
  return table(
    ['stream', 'partitions', 'records', 'bytes', 'end offsets'],
    body.streams
      .filter((s) => !s.name.endsWith('.dlq'))
      .map((s) =>
        h(
          'tr',
          { 'data-testid': 'stream-row', 'dataset': { stream: s.name } },
          h('td', {}, s.name),
          h('td', {}, num(s.partitionCount)),
          h('td', {}, num(s.records)),
          h('td', {}, num(s.bytes)),
          h('td', {}, s.partitions.map((p) => p.endOffset).join(' '))
        )
      ),
    'No streams.'
  )
}

function renderDeadLetters(body) {
  return table(
    ['dead-letter stream', 'records', 'of stream'],
    body.streams
      .filter((s) => s.name.endsWith('.dlq'))
      .map((s) =>
        h(
          'tr',
          { 'data-testid': 'dlq-row', 'dataset': { stream: s.name } },
          h('td', {}, s.name),
          h('td', { 'data-testid': 'dlq-count' }, num(s.records)),
          h('td', {}, s.name.slice(0, -4))
        )
      ),
    'No dead-letter streams.'
  )
}

function renderGroups(body) {
  return table(
    ['group', 'state', 'members', 'streams', 'lag'],
    body.groups.map((g) =>
      h(
        'tr',
        { 'data-testid': 'group-row', 'dataset': { group: g.group } },
        h('td', {}, g.group),
        h('td', {}, g.state),
        h('td', {}, num(g.members)),
        h('td', {}, g.streams.join(', ')),
        h('td', { 'data-testid': 'group-lag', 'class': g.lag > 0 ? 'lag' : undefined }, num(g.lag))
      )
    ),
    'No consumer groups.'
  )
}

function renderShared(body) {
  return table(
    ['shared group', 'streams', 'lag', 'dead-lettered', 'lag alert'],
    body.groups.map((g) =>
      h(
        'tr',
        { 'data-testid': 'shared-row', 'dataset': { group: g.group } },
        h('td', {}, g.group),
        h('td', {}, g.streams.join(', ')),
        h('td', { 'data-testid': 'shared-lag', 'class': g.lag > 0 ? 'lag' : undefined }, num(g.lag)),
        h('td', {}, num(g.deadLettered)),
        h('td', {}, g.lagAlert ? 'over its alert' : '–')
      )
    ),
    'No shared groups.'
  )
}

function renderBridges(body) {
  return table(
    ['bridge', 'kind', 'direction', 'state', 'lag', 'delivered', 'dead-lettered', 'retries', 'last error', ''],
    body.bridges.map((b) => {
      const paused = b.state === 'paused'
      const path = `/api/v1/bridges/${encodeURIComponent(b.name)}/${paused ? 'resume' : 'pause'}`
      return h(
        'tr',
        { 'data-testid': 'bridge-row', 'dataset': { bridge: b.name } },
        h('td', {}, b.name),
        h('td', {}, b.kind),
        h('td', {}, b.direction),
        h('td', { 'data-testid': 'bridge-state', 'class': `state-${b.state}` }, b.state),
        h('td', {}, num(b.lag)),
        h('td', {}, num(b.delivered)),
        h('td', {}, num(b.deadLettered)),
        h('td', {}, num(b.retries)),
        h('td', { class: b.lastError ? 'error' : undefined }, b.lastError ?? ''),
        h(
          'td',
          {},
          h(
            'button',
            {
              'type': 'button',
              'data-testid': paused ? 'bridge-resume' : 'bridge-pause',
              'aria-label': `${paused ? 'Resume' : 'Pause'} bridge ${b.name}`,
              'onclick': (e) => action(e.target, 'POST', path)
            },
            paused ? 'Resume' : 'Pause'
          )
        )
      )
    }),
    'No bridges configured.'
  )
}

// ---- charts ----------------------------------------------------------------------------------

const series = { t: [], rate: [], connections: [], lag: [], sharedLag: [] }
let charts = null
let last = null // previous sample: { t, received, seen, sysAt (when $SYS's counter last moved), rate }

function makeCharts() {
  const opts = (label, extra = []) => ({
    width: 360,
    height: 160,
    scales: { x: { time: true } },
    axes: [{}, { size: 60 }],
    legend: { show: true },
    series: [{}, { label, stroke: '#1f6feb', width: 2, spanGaps: false }, ...extra]
  })
  const charts = {
    rate: new uPlot(opts('messages/s'), [[], []], $('chart-rate')),
    connections: new uPlot(opts('connections'), [[], []], $('chart-connections')),
    lag: new uPlot(opts('groups', [{ label: 'shared groups', stroke: '#d97706', width: 2 }]), [[], [], []], $('chart-lag'))
  }
  const fit = () => {
    for (const [key, chart] of Object.entries(charts)) {
      const box = $(`chart-${key}`).parentElement.clientWidth
      chart.setSize({ width: Math.max(240, box - 8), height: 160 })
    }
  }
  window.addEventListener('resize', fit)
  fit()
  return charts
}

function sample(groups, shared, clients, status) {
  const t = Date.now() / 1000
  const received = sys.get('$SYS/broker/messages/received') ?? sys.get('$SYS/broker/publish/messages/received')
  // the admin API's status is fresh every sample; $SYS comes every sys-interval (10 s by default)
  let rate = null
  if (status?.messages) {
    rate = status.messages.receivedPerSecond
    $('rate-source').textContent = '(admin API status)'
  } else if (last !== null && t > last.t) {
    if (received !== undefined && last.received !== undefined && last.sysAt !== undefined) {
      rate = received === last.received ? last.rate : Math.max(0, (received - last.received) / (t - last.sysAt))
      $('rate-source').textContent = '($SYS/broker/messages/received)'
    } else {
      rate = (seen - last.seen) / (t - last.t)
      $('rate-source').textContent = '(seen by this page)'
    }
  }
  const sysAt = last !== null && received === last.received ? last.sysAt : t
  last = { t, received, seen, sysAt, rate }
  let connections = null
  if (status !== null) {
    connections = status.clients.connected
    $('conn-source').textContent = '(admin API status)'
  } else if (sys.has('$SYS/broker/clients/connected')) {
    connections = sys.get('$SYS/broker/clients/connected')
    $('conn-source').textContent = '($SYS/broker/clients/connected)'
  } else if (clients !== null) {
    connections = (clients.clients ?? []).length
    $('conn-source').textContent = '(admin API clients)'
  } else $('conn-source').textContent = '(not available)'
  const sum = (list) => (list === null ? null : list.groups.reduce((a, g) => a + (g.lag ?? 0), 0))
  series.t.push(t)
  series.rate.push(rate)
  series.connections.push(connections)
  series.lag.push(sum(groups))
  series.sharedLag.push(sum(shared))
  while (series.t.length > 0 && series.t[0] < t - WINDOW_S) for (const s of Object.values(series)) s.shift()
  charts.rate.setData([series.t, series.rate])
  charts.connections.setData([series.t, series.connections])
  charts.lag.setData([series.t, series.lag, series.sharedLag])
}

// ---- start -----------------------------------------------------------------------------------

let pollTimer = null
let refreshing = false

async function refresh() {
  if (refreshing) return
  refreshing = true
  try {
    const [streams, groups, shared, , clients, status] = await Promise.all([
      panel('streams', '/api/v1/streams', renderStreams),
      panel('groups', '/api/v1/groups', renderGroups),
      panel('shared', '/api/v1/shared-groups', renderShared),
      panel('bridges', '/api/v1/bridges', renderBridges),
      panel('clients', '/api/v1/clients', renderClients),
      quiet('/api/v1/status')
    ])
    if (streams !== null) $('dlq').replaceChildren(renderDeadLetters(streams))
    else $('dlq').replaceChildren(h('p', { class: 'hint' }, 'Not available.'))
    sample(groups, shared, clients, status)
  } finally {
    refreshing = false
  }
}

async function start() {
  clearInterval(pollTimer)
  let config
  try {
    const res = await api('GET', '/api/v1/dashboard')
    if (res.status !== 200) throw new Error(res.body?.message ?? `status ${res.status}`)
    config = res.body
  } catch (err) {
    if (!(err instanceof Unauthorized)) $('api-state').textContent = `error: ${err.message}`
    return
  }
  $('login').hidden = true
  $('api-state').textContent = 'connected'
  $('who').textContent = credentials === null ? '' : `logged in as ${credentials.user ?? 'token'}`
  $('logout').hidden = credentials === null
  charts ??= makeCharts()
  connectMqtt(config.mqtt)
  await refresh()
  pollTimer = setInterval(() => void refresh(), SAMPLE_MS)
}

renderTree()
void start()
