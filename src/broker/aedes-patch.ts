import { createRequire, register } from 'node:module'
import { pathToFileURL } from 'node:url'
import { silenceDebugWhenOff } from './debug-off.js'
import { ACK_ORDER_PATCH, HOOK_URL, PATCH_MARKER } from './qos1-ack-hook.js'

let registered = false

/**
 * Installs the QoS 1 ack-order fix (see qos1-ack-hook.ts) and checks that the aedes that gets
 * loaded carries it. Must run before aedes is first imported in this process; callers import
 * aedes dynamically after this.
 */
export async function installAedesPatch(): Promise<void> {
  silenceDebugWhenOff()
  if (!registered) {
    register(HOOK_URL, { data: ACK_ORDER_PATCH })
    registered = true
  }
  // aedes's package exports hide lib/, so locate the handler next to the package's main module
  const aedesMain = pathToFileURL(createRequire(import.meta.url).resolve('aedes'))
  const handlerUrl = new URL('./lib/handlers/publish.js', aedesMain)
  const handler = (await import(handlerUrl.href)) as Record<string, unknown>
  if (handler[PATCH_MARKER] !== true) {
    throw new Error(
      'Culex: aedes was loaded before the QoS 1 ack-order patch was installed; ' +
        'QoS 1 acks would not wait for durability. Import the broker through src/broker/ only.'
    )
  }
}
