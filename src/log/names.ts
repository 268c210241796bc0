// Naming rules of the log contract, the same for every backend: stream and group names must be
// safe in storage keys, URLs, metric labels and the subjects of other systems (NATS, AMQP).

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

export const NAME_RULE = "1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"

/** Stream and group names. */
export function isValidName(name: string): boolean {
  return NAME.test(name)
}

/** Partitions of one stream: 1 to this. */
export const MAX_PARTITIONS = 1024
