// How many publishes of a client the broker holds (publish-rate, store-high-water): while the
// count is above zero, the source patch of aedes's lib/client.js reads nothing more from the
// client's socket (source-patches.ts, 6), so TCP backpressure slows the client down. The count is
// a property of aedes's client object, which the patched code reads (a plain property: it is read
// for every packet).

interface Counted {
  _culexHeldPublishes?: number
}

/**
 * Counts one more held publish of `client`; returns `done` wrapped so that the count goes down just
 * before aedes goes on with the publish.
 */
export function holdPublish<A extends unknown[]>(client: object, done: (...args: A) => void): (...args: A) => void {
  const c = client as Counted
  c._culexHeldPublishes = (c._culexHeldPublishes ?? 0) + 1
  return (...args: A) => {
    c._culexHeldPublishes = (c._culexHeldPublishes ?? 1) - 1
    done(...args)
  }
}
