// One error hierarchy for what Culex refuses or cannot do (as kafkajs has KafkaJSError): a stable
// `code` for programs, a message for people, details, and whether trying again can succeed.
// The HTTP API maps each code to a status (src/http/errors.ts); nothing else parses messages.

export class CulexError<Code extends string = string> extends Error {
  constructor(
    readonly code: Code,
    message: string,
    readonly details: Record<string, unknown> = {},
    /** True when the same request may succeed later (a rebalance, an outage), false for bad input. */
    readonly retriable = false
  ) {
    super(message)
    this.name = new.target.name
  }
}
