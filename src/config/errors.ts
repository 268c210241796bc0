/**
 * A config value or combination Culex will not run with. The message names the key (or the path
 * inside a section, e.g. `routes[1].key`), where the value came from and what is allowed; the CLI
 * prints it and exits with code 2 before anything is touched.
 */
export class ConfigError extends Error {
  override name = 'ConfigError'
}
