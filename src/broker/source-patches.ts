// The QoS 1 ack-order fix, as a Node module load hook (aedes-patch.ts registers it).
//
// aedes 1.x (and 2.0 beta) writes the QoS 1 PUBACK *before* broker.publish stores the retained
// message, queues it for offline sessions and runs the `published` hook (lib/handlers/publish.js).
// A crash between the two loses an acknowledged message, breaking Culex's durability contract.
// The hook rewrites that one case at load time to the order aedes already uses for QoS 2:
// publish first, then acknowledge. It leaves node_modules untouched and fails loudly if the
// source no longer has the expected shape, so an aedes upgrade cannot silently drop the fix.
//
// Hooks run in Node's loader thread, which loads JavaScript only; the hook is therefore plain
// JavaScript registered as a data: URL, so it loads the same from dist/ and from the TypeScript
// sources (vitest). What it replaces is passed to it as data.

export const PATCH_MARKER = 'CULEX_QOS1_ACK_AFTER_PUBLISH'

export interface AckOrderPatch {
  /** The module the hook rewrites (a RegExp source matched against its URL). */
  target: string
  /** The QoS 1 case of aedes 1.2.0 (a RegExp source). */
  from: string
  to: string
  marker: string
}

export const ACK_ORDER_PATCH: AckOrderPatch = {
  target: /\/node_modules\/aedes\/lib\/handlers\/publish\.js$/.source,
  from: /case 1:\s*write\(client, new PubAck\(packet\), function \(err\) \{\s*if \(err\) \{ return done\(err\) \}\s*client\.broker\.publish\(packet, client, done\)\s*\}\)\s*break/
    .source,
  to: `case 1:
      // patched by Culex (src/broker/qos1-ack-hook.ts): acknowledge only after publish is durable
      client.broker.publish(packet, client, function (err) {
        if (err) { return done(err) }
        write(client, new PubAck(packet), done)
      })
      break`,
  marker: PATCH_MARKER
}

/** The loader hook module: `initialize(patch)`, `patch(source)` and Node's `load` hook. */
export const HOOK_MODULE = `
let p
export function initialize(data) {
  p = { target: new RegExp(data.target), from: new RegExp(data.from), to: data.to, marker: data.marker }
}
export function patch(source) {
  if (!p.from.test(source)) {
    throw new Error('Culex: aedes lib/handlers/publish.js does not have the expected QoS 1 code; ' +
      'the PUBACK-after-publish patch cannot be applied to this aedes version')
  }
  return source.replace(p.from, () => p.to) + '\\nexport const ' + p.marker + ' = true\\n'
}
export async function load(url, context, nextLoad) {
  const result = await nextLoad(url, context)
  if (!p.target.test(url) || result.source == null) return result
  const source = typeof result.source === 'string' ? result.source : new TextDecoder().decode(result.source)
  return { ...result, source: patch(source), shortCircuit: true }
}
`

export const HOOK_URL = 'data:text/javascript,' + encodeURIComponent(HOOK_MODULE)
