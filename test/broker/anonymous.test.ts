import { describe, expect, it } from 'vitest'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { connect } from '../helpers/mqtt.js'

describe('allow-anonymous false', () => {
  it('refuses every client with CONNACK return code 5 (no credential store exists yet)', async () => {
    const gw = await GatewayProcess.start(tempDataDir('anon'), ['--allow-anonymous', 'false'])
    try {
      const err = await connect(gw.url('mqtt'), { username: 'someone', password: 'secret' }).then(
        () => null,
        (e: unknown) => e as Error & { code?: number }
      )
      expect(err).not.toBeNull()
      expect(err!.code).toBe(5)
      expect(err!.message).toMatch(/Not authorized/i)
    } finally {
      expect(await gw.stop()).toBe(0)
    }
  })
})
