import { createRequire, register } from 'node:module'
import { pathToFileURL } from 'node:url'
import { silenceDebugWhenOff } from './debug-off.js'
import { HOOK_URL, PATCH_MARKER, SOURCE_PATCHES } from './source-patches.js'

let registered = false

/** The files of aedes the source patches rewrite, relative to its package. */
const PATCHED_FILES = ['./lib/handlers/publish.js', './lib/write.js', './lib/handlers/subscribe.js', './lib/handlers/puback.js', './lib/client.js']

/**
 * Installs Culex's source patches of aedes (source-patches.ts) and checks that the aedes that gets
 * loaded carries them. Must run before aedes is first imported in this process; callers import
 * aedes dynamically after this.
 */
export async function installAedesPatch(): Promise<void> {
  silenceDebugWhenOff()
  if (!registered) {
    register(HOOK_URL, { data: SOURCE_PATCHES })
    registered = true
  }
  // aedes's package exports hide lib/, so locate the files next to the package's main module
  const aedesMain = pathToFileURL(createRequire(import.meta.url).resolve('aedes'))
  for (const file of PATCHED_FILES) {
    const module = (await import(new URL(file, aedesMain).href)) as Record<string, unknown>
    if (module[PATCH_MARKER] !== true) {
      throw new Error(
        `Culex: aedes ${file} was loaded before Culex's patches were installed; QoS 1 acks would not wait ` +
          'for durability. Import the broker through src/broker/ only.'
      )
    }
  }
}
