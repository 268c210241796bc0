// Culex's changes to aedes's own source, applied at load time by a Node module hook
// (aedes-patch.ts registers it). Each is a regular expression on one file of aedes 1.2.0 and its
// replacement; the hook fails loudly when a file no longer has the expected shape, so an aedes
// upgrade cannot silently drop a fix. node_modules stays untouched.
//
// 1. QoS 1 ack order (lib/handlers/publish.js). aedes 1.x (and 2.0 beta) writes the QoS 1 PUBACK
//    before broker.publish stores the retained message, queues it for offline sessions and runs
//    the `published` hook. A crash between the two loses an acknowledged message. The patch uses
//    the order aedes already uses for QoS 2: publish first, then acknowledge.
// 2. No publisher waits for a slow subscriber (lib/write.js). When a subscriber's socket buffer
//    is full, aedes makes the write wait for 'drain', and the publishing client's publish (and its
//    PUBACK) wait with it, up to drainTimeout (60 s). The patch asks the broker's outgoing guard
//    (outgoing-guard.ts) before each write, and never waits for drain when the guard is there:
//    the guard bounds the buffer itself (drop QoS 0, close a stuck client).
// 3. A message is delivered at the lower of its QoS and the subscription's [MQTT-3.8.4-6,
//    MQTT-3.3.5-1] (lib/handlers/subscribe.js). aedes downgrades only when the topic equals the
//    filter, so a wildcard subscription got QoS 1 and 2 messages above its granted QoS, live and
//    retained (moscajs/aedes#1074). The patch downgrades per subscription, and hands the granted
//    QoS of each filter to the retained lookup (RocksPersistence.createRetainedStreamCombi).
// 4. A publish the ACL denies is acknowledged and dropped (lib/handlers/publish.js). MQTT 3.1.1
//    has no negative PUBACK; mosquitto answers such a publish as if it were accepted. aedes can only
//    refuse a publish by closing the connection, so the broker marks the packet (broker.ts, DENIED)
//    and the patched handler sends PUBACK / PUBREC without publishing. A QoS 2 one is stored as
//    awaiting PUBREL first, so a resend before PUBREL is a duplicate (a delayed publish is then not
//    kept twice); the PUBREL clears it and gets PUBCOMP.
// 5. Shared subscriptions served from the log (share-subscriptions.ts). (a) The SUBACK grants the
//    QoS of the subscription authorizeSubscribe returns, not always the one requested (aedes 1.2
//    ignores a changed QoS), so a log-backed `$share/` subscription asking QoS 2 is granted 1.
//    (b) A subscription marked `Symbol.for('culex.logShare')` is kept with the session but not added
//    to aedes's topic tree: aedes delivers nothing to it. (c) A PUBACK is first offered to the
//    broker's `culexPuback`; one for a log delivery goes no further (it is no offline-queue entry).
// 6. Nothing is read from a client while the broker holds one of its publishes (lib/client.js).
//    aedes reads a client's socket again when every packet of the last read is done, and holding a
//    publish's authorizePublish callback (publish-rate, store-high-water) was meant to stop the
//    reads. But each 'readable' event of the socket also counts as a packet done, so a client
//    whose reads hold one large packet each was read on at full speed while held. The patch skips
//    the read while the client's count of held publishes (held-publishes.ts) is above zero; the
//    last held publish to finish reads on.
//
// Hooks run in Node's loader thread, which loads JavaScript only: the hook is plain JavaScript
// registered as a data: URL, so it loads the same from dist/ and from the TypeScript sources.

export const PATCH_MARKER = 'CULEX_PATCHED'

export interface SourcePatch {
  name: string
  /** The module the patch rewrites (a RegExp source matched against its URL). */
  target: string
  /** What is replaced (a RegExp source). */
  from: string
  to: string
}

export const SOURCE_PATCHES: SourcePatch[] = [
  {
    name: 'no read while a publish is held',
    target: /\/node_modules\/aedes\/lib\/client\.js$/.source,
    from: /that\._parsingBatch--\s*if \(that\._parsingBatch <= 0\) \{\s*that\._parsingBatch = 0\s*const buf = client\.conn\.read\(null\)/.source,
    to: `that._parsingBatch--
      if (that._parsingBatch <= 0) {
        that._parsingBatch = 0
        // patched by Culex (src/broker/source-patches.ts): nothing is read while a publish of this client is held
        if (client._culexHeldPublishes > 0) return
        const buf = client.conn.read(null)`
  },
  {
    name: 'QoS 1 PUBACK after publish',
    target: /\/node_modules\/aedes\/lib\/handlers\/publish\.js$/.source,
    from: /case 1:\s*write\(client, new PubAck\(packet\), function \(err\) \{\s*if \(err\) \{ return done\(err\) \}\s*client\.broker\.publish\(packet, client, done\)\s*\}\)\s*break/
      .source,
    to: `case 1:
      // patched by Culex (src/broker/source-patches.ts): acknowledge only after publish is durable
      client.broker.publish(packet, client, function (err) {
        if (err) { return done(err) }
        write(client, new PubAck(packet), done)
      })
      break`
  },
  {
    name: 'denied publishes acknowledged, not published',
    target: /\/node_modules\/aedes\/lib\/handlers\/publish\.js$/.source,
    from: /function enqueuePublish \(packet, done\) \{\s*const client = this\s*switch \(packet\.qos\) \{/.source,
    to: `function enqueuePublish (packet, done) {
  const client = this
  // patched by Culex (src/broker/source-patches.ts): denied by the ACL, or kept for later (delayed);
  // acknowledge, do not publish. A QoS 2 one is stored as awaiting PUBREL, so that a resend before
  // PUBREL is known as a duplicate [MQTT-4.3.3-2] and not kept a second time.
  if (packet[Symbol.for('culex.denied')] === true) {
    if (packet.qos === 1) return write(client, new PubAck(packet), done)
    if (packet.qos === 2) {
      const persistence = client.broker.persistence
      return persistence.incomingGetPacket(client, packet).then(
        () => write(client, new PubRec(packet), done),
        () => persistence.incomingStorePacket(client, packet).then(() => write(client, new PubRec(packet), done), done)
      )
    }
    return done()
  }
  switch (packet.qos) {`
  },
  {
    name: 'no waiting for a slow subscriber',
    target: /\/node_modules\/aedes\/lib\/write\.js$/.source,
    from: /const result = mqtt\.writeToStream\(packet, client\.conn\)\s*if \(!result && !client\.errored\) \{/.source,
    to: `// patched by Culex (src/broker/source-patches.ts): the outgoing guard bounds the buffer
      const guard = client.broker.culexOutgoingGuard
      if (guard !== undefined && !guard(client, packet)) {
        setImmediate(done, null, client)
        return
      }
      const result = mqtt.writeToStream(packet, client.conn)
      if (!result && !client.errored && guard === undefined) {`
  },
  {
    name: 'live messages at the subscription QoS',
    target: /\/node_modules\/aedes\/lib\/handlers\/subscribe\.js$/.source,
    from: /_packet = new Packet\(_packet, broker\)\s*_packet\.nl = nl/.source,
    to: `_packet = new Packet(_packet, broker)
    // patched by Culex (src/broker/source-patches.ts): the lower of the two QoS [MQTT-3.8.4-6]
    if (_packet.qos > qos) _packet.qos = qos
    _packet.nl = nl`
  },
  {
    name: 'retained messages at the subscription QoS (granted list)',
    target: /\/node_modules\/aedes\/lib\/handlers\/subscribe\.js$/.source,
    from: /const topics = \[\]\s*for \(let i = 0; i < subs\.length; i\+\+\) \{\s*\/\/ skip topics that are not allowed\s*if \(this\.subState\[i\]\.granted !== 128\) \{\s*topics\.push\(subs\[i\]\.topic\)\s*\}/
      .source,
    to: `const topics = []
  // patched by Culex (src/broker/source-patches.ts): each filter's granted QoS, for the retained lookup
  const grantedQos = []
  for (let i = 0; i < subs.length; i++) {
    // skip topics that are not allowed
    if (this.subState[i].granted !== 128) {
      topics.push(subs[i].topic)
      grantedQos.push(this.subState[i].granted)
    }`
  },
  {
    name: 'retained messages at the subscription QoS (lookup)',
    target: /\/node_modules\/aedes\/lib\/handlers\/subscribe\.js$/.source,
    from: /persistence\.createRetainedStreamCombi\(topics\)/.source,
    to: 'persistence.createRetainedStreamCombi(topics, grantedQos)'
  },
  {
    name: 'SUBACK grants the QoS authorizeSubscribe returns',
    target: /\/node_modules\/aedes\/lib\/handlers\/subscribe\.js$/.source,
    from: /client\.broker\.authorizeSubscribe\(client, sub, done\)\s*\}/.source,
    to: `// patched by Culex (src/broker/source-patches.ts): the QoS of the subscription returned is the one granted
  const state = this
  client.broker.authorizeSubscribe(client, sub, function (err, authorized) {
    if (!err && authorized && typeof authorized === 'object' && typeof authorized.qos === 'number') state.granted = authorized.qos
    done(err, authorized)
  })
}`
  },
  {
    name: 'log-backed shared subscriptions stay out of the topic tree',
    target: /\/node_modules\/aedes\/lib\/handlers\/subscribe\.js$/.source,
    from: /function addSubs \(sub, done\) \{\s*if \(!sub \|\| typeof sub !== 'object'\) \{\s*return done\(\)\s*\}/.source,
    to: `function addSubs (sub, done) {
  if (!sub || typeof sub !== 'object') {
    return done()
  }
  // patched by Culex (src/broker/source-patches.ts): served from the log (share-subscriptions.ts), not by aedes
  if (sub[Symbol.for('culex.logShare')] === true) {
    return done()
  }`
  },
  {
    name: 'PUBACKs of log deliveries',
    target: /\/node_modules\/aedes\/lib\/handlers\/puback\.js$/.source,
    from: /function handlePuback \(client, packet, done\) \{/.source,
    to: `function handlePuback (client, packet, done) {
  // patched by Culex (src/broker/source-patches.ts): a PUBACK of a delivery from the log (share-subscriptions.ts)
  const culexPuback = client.broker.culexPuback
  if (culexPuback !== undefined && culexPuback(client, packet)) {
    return done()
  }`
  }
]

/** The loader hook module: `initialize(patches)`, `patch(url, source)` and Node's `load` hook. */
export const HOOK_MODULE = `
let patches = []
export function initialize(data) {
  patches = data.map((p) => ({ name: p.name, target: new RegExp(p.target), from: new RegExp(p.from), to: p.to }))
}
export function patch(url, source) {
  let out = source
  let applied = false
  for (const p of patches) {
    if (!p.target.test(url)) continue
    if (!p.from.test(out)) {
      throw new Error('Culex: aedes ' + url.replace(/^.*node_modules\\//, '') + ' does not have the expected code; ' +
        'the patch "' + p.name + '" cannot be applied to this aedes version')
    }
    out = out.replace(p.from, () => p.to)
    applied = true
  }
  return applied ? out + '\\nexport const ${PATCH_MARKER} = true\\n' : out
}
export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context)
  if (result.source == null || !patches.some((p) => p.target.test(url))) return result
  const source = typeof result.source === 'string' ? result.source : new TextDecoder().decode(result.source)
  return { ...result, source: patch(url, source), shortCircuit: true }
}
`

export const HOOK_URL = 'data:text/javascript,' + encodeURIComponent(HOOK_MODULE)
