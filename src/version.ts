import { readFileSync } from 'node:fs'

/** Culex's version, from package.json (two levels up from dist/src/, one from src/); 'unknown' when it cannot be read. */
export function packageVersion(): string {
  for (const path of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { name?: string; version?: string }
      if (pkg.name === 'culex' && pkg.version) return pkg.version
    } catch {
      // not at this level
    }
  }
  return 'unknown'
}
