// How many publishes of a client the broker holds (publish-rate, store-high-water): while the
// count is above zero, the source patch of aedes's lib/client.js reads nothing more from the
// client's socket (source-patches.ts, 6), so TCP backpressure slows the client down. The count is
// a property of aedes's client object, which the patched code reads (a plain property: it is read
// for every packet).
//
// A held client is not silent: its packets (PINGREQ among them) wait unread because the broker
// holds it. aedes refreshes the keepalive timer only when it handles a packet, so while a client
// has held publishes its timer is refreshed here, or the broker would disconnect it for a silence
// of its own making [MQTT-3.1.2-24 is about the client's silence].

interface Counted {
  _culexHeldPublishes?: number
  _culexKeepaliveRefresh?: NodeJS.Timeout
  _keepaliveTimer?: { refresh(): unknown } | null
  _keepaliveInterval?: number
}

function startRefreshing(c: Counted): void {
  const interval = c._keepaliveInterval ?? -1
  if (interval <= 0 || c._culexKeepaliveRefresh) return
  c._culexKeepaliveRefresh = setInterval(() => c._keepaliveTimer?.refresh(), Math.max(10, Math.floor(interval / 3)))
  c._culexKeepaliveRefresh.unref()
}

function stopRefreshing(c: Counted): void {
  if (!c._culexKeepaliveRefresh) return
  clearInterval(c._culexKeepaliveRefresh)
  c._culexKeepaliveRefresh = undefined
  // the silence is counted from when reading resumes
  c._keepaliveTimer?.refresh()
}

/**
 * Counts one more held publish of `client`; returns `done` wrapped so that the count goes down just
 * before aedes goes on with the publish.
 */
export function holdPublish<A extends unknown[]>(client: object, done: (...args: A) => void): (...args: A) => void {
  const c = client as Counted
  c._culexHeldPublishes = (c._culexHeldPublishes ?? 0) + 1
  startRefreshing(c)
  return (...args: A) => {
    c._culexHeldPublishes = (c._culexHeldPublishes ?? 1) - 1
    if (c._culexHeldPublishes <= 0) stopRefreshing(c)
    done(...args)
  }
}
