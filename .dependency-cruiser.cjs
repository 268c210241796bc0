// The architecture as rules (dependency-cruiser): no cycles, and each layer imports only what it
// may. `npm test` runs `depcruise src` with this file; a finding fails the suite.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'A cycle means two modules are one responsibility, or a seam is in the wrong place.',
      from: {},
      to: { circular: true }
    },
    {
      name: 'aedes-stays-in-broker-and-persistence',
      severity: 'error',
      comment: 'MQTT 5 comes on aedes 2: only src/broker/ and src/persistence/ know aedes.',
      from: { path: '^src/', pathNot: '^src/(broker|persistence)/' },
      to: { path: '(^|/)node_modules/(aedes|aedes-persistence|aedes-packet|qlobber)/' }
    },
    {
      name: 'rocksdb-stays-in-the-store-layer',
      severity: 'error',
      comment: 'Only the store, the RocksDB log backend and the persistence adapter touch the binding.',
      from: { path: '^src/', pathNot: '^src/(store|log/rocks|persistence)/' },
      to: { path: '(^|/)node_modules/@nxtedition/rocksdb/' }
    },
    {
      name: 'log-backend-is-chosen-by-the-gateway-only',
      severity: 'error',
      comment: 'Everything but the composition root uses the Log contract, not a backend.',
      from: { path: '^src/', pathNot: '^src/(gateway\\.ts|log/rocks/)' },
      to: { path: '^src/log/rocks/' }
    },
    {
      name: 'groups-are-backend-neutral',
      comment: 'Ordered and shared groups work over the Log contract, so any backend serves them.',
      severity: 'error',
      from: { path: '^src/log/(groups|shared)/' },
      to: { path: '^src/(store|persistence|log/rocks)/' }
    },
    {
      name: 'the-log-does-not-know-mqtt-brokers-or-http',
      severity: 'error',
      from: { path: '^src/log/' },
      to: { path: '^src/(broker|persistence|http|routing|auth|commands|delayed)/' }
    },
    {
      name: 'http-uses-contracts-not-the-broker',
      severity: 'error',
      from: { path: '^src/http/' },
      to: { path: '^src/(broker|persistence|store|routing|delayed)/' }
    },
    {
      name: 'cli-commands-speak-the-wire-types-only',
      severity: 'error',
      comment: 'The CLI is an HTTP client: it imports src/http/wire.ts, not the server.',
      from: { path: '^src/commands/' },
      to: { path: '^src/', pathNot: '^src/(commands/|http/wire\\.ts|log/(types|groups/types|replay)\\.ts|errors\\.ts)' }
    },
    {
      name: 'mqtt-rules-stand-alone',
      severity: 'error',
      from: { path: '^src/mqtt/' },
      to: { path: '^src/', pathNot: '^src/mqtt/' }
    },
    {
      name: 'the-broker-does-not-know-its-hooks',
      severity: 'error',
      comment: 'Hooks plug into the chain; the broker only knows the chain (src/broker/hooks.ts).',
      from: { path: '^src/broker/' },
      to: { path: '^src/(routing|auth|log|http|delayed)/' }
    },
    {
      name: 'delayed-delivery-uses-contracts',
      severity: 'error',
      comment:
        'Delayed delivery plugs into the hook chain, stores through the Store and hands due work to the publish and append the gateway gives it: it knows no log backend, no HTTP, routing or auth (the HTTP API sees it through its own DelayedAppends).',
      from: { path: '^src/delayed/' },
      to: { path: '^src/(http|routing|auth|persistence|log/rocks|log/groups|log/shared|commands|config)/' }
    },
    {
      name: 'bridges-use-contracts',
      severity: 'error',
      comment:
        'Bridges read the log through its contract and publish through the function the gateway gives them: no broker, persistence, store, log backend, HTTP, routing or auth.',
      from: { path: '^src/bridges/' },
      to: { path: '^src/(broker|persistence|store|log/rocks|log/groups|http|routing|auth|commands|delayed)/' }
    },
    {
      name: 'a-bridge-kind-stands-alone',
      severity: 'error',
      comment: 'One folder per kind: a kind uses the bridge contract and mapping, never another kind.',
      from: { path: '^src/bridges/([^/]+)/' },
      to: { path: '^src/bridges/([^/]+)/', pathNot: '^src/bridges/$1/' }
    },
    {
      name: 'bridge-clients-stay-in-their-kind',
      severity: 'error',
      comment: "A target's client library is loaded by its kind's folder only (lazily, when such a bridge is configured).",
      from: { path: '^src/', pathNot: '^src/bridges/(nats|redis|amqp|mqtt)/' },
      to: { path: '(^|/)node_modules/(@nats-io|ioredis|amqplib)/' }
    },
    {
      name: 'nothing-imports-the-composition-root',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/cli\\.ts$' },
      to: { path: '^src/gateway\\.ts$' }
    }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // type-only imports count: an architecture cycle is a cycle even when erased at run time
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.d.ts']
    },
    reporterOptions: { text: { highlightFocused: true } }
  }
}
