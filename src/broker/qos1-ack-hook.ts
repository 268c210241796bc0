// Node module load hook (runs in Node's loader thread, see aedes-patch.ts).
//
// aedes 1.x (and 2.0 beta) writes the QoS 1 PUBACK *before* broker.publish stores the retained
// message, queues it for offline sessions and runs the `published` hook (lib/handlers/publish.js).
// A crash between the two loses an acknowledged message, breaking Culex's durability contract.
// This hook rewrites that one case at load time to the order aedes already uses for QoS 2:
// publish first, then acknowledge. It leaves node_modules untouched and fails loudly if the
// source no longer has the expected shape, so an aedes upgrade cannot silently drop the fix.

interface LoadContext {
  format?: string
}
interface LoadResult {
  format?: string
  source?: string | ArrayBuffer | Uint8Array
  shortCircuit?: boolean
}
type NextLoad = (url: string, context: LoadContext) => Promise<LoadResult>

const TARGET = /\/node_modules\/aedes\/lib\/handlers\/publish\.js$/

const QOS1_ACK_FIRST =
  /case 1:\s*write\(client, new PubAck\(packet\), function \(err\) \{\s*if \(err\) \{ return done\(err\) \}\s*client\.broker\.publish\(packet, client, done\)\s*\}\)\s*break/

const QOS1_PUBLISH_FIRST = `case 1:
      // patched by Culex (src/broker/qos1-ack-hook.ts): acknowledge only after publish is durable
      client.broker.publish(packet, client, function (err) {
        if (err) { return done(err) }
        write(client, new PubAck(packet), done)
      })
      break`

export const PATCH_MARKER = 'CULEX_QOS1_ACK_AFTER_PUBLISH'

export function patchPublishHandler(source: string): string {
  if (!QOS1_ACK_FIRST.test(source)) {
    throw new Error(
      'Culex: aedes lib/handlers/publish.js does not have the expected QoS 1 code; ' +
        'the PUBACK-after-publish patch cannot be applied to this aedes version'
    )
  }
  return source.replace(QOS1_ACK_FIRST, QOS1_PUBLISH_FIRST) + `\nexport const ${PATCH_MARKER} = true\n`
}

export async function load(url: string, context: LoadContext, nextLoad: NextLoad): Promise<LoadResult> {
  const result = await nextLoad(url, context)
  if (!TARGET.test(url) || result.source === undefined) return result
  const source = typeof result.source === 'string' ? result.source : Buffer.from(result.source as Uint8Array).toString('utf8')
  return { ...result, source: patchPublishHandler(source), shortCircuit: true }
}
