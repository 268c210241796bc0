import { describe, expect, it } from 'vitest'
import { HookChain, type BrokerHook, type PublishContext } from '../../src/broker/hooks.js'

// The hook chain's claim step (src/broker/hooks.ts), which delayed publish uses: a claimed
// publish is judged by authorize and quota as the publish it will become, then kept instead of
// admitted; a claimer's refusal stops it before authorize; wills cannot be claimed.

function publish(topic: string, more: Partial<PublishContext> = {}): PublishContext {
  return { topic, payload: Buffer.from('x'), qos: 1, retain: false, messageId: 1, clientId: 'c', principal: null, origin: 'client', duplicate: false, ...more }
}

function chain(events: string[], keep: () => Promise<void> = () => Promise.resolve()): HookChain {
  const claimer: BrokerHook = {
    name: 'later',
    stage: 'admit',
    claim: (p) => {
      if (!p.topic.startsWith('later/')) return undefined
      if (p.topic === 'later/bad') return { reason: 'malformed' }
      return { publish: { ...p, topic: p.topic.slice('later/'.length) }, keep: () => (events.push(`keep ${p.topic}`), keep()) }
    }
  }
  return new HookChain([
    { name: 'log', stage: 'admit', admit: (p) => void events.push(`admit ${p.topic}`) },
    claimer,
    { name: 'quota', stage: 'quota', authorizePublish: (p) => void events.push(`quota ${p.topic}`) },
    {
      name: 'acl',
      stage: 'authorize',
      authorizePublish: (p) => (events.push(`acl ${p.topic}`), p.topic.startsWith('denied') ? { reason: 'no', drop: true } : undefined)
    }
  ])
}

describe('claim in the hook chain', () => {
  it('judges a claimed publish as the publish it will be, then keeps it instead of admitting it', async () => {
    const events: string[] = []
    const outcome = chain(events).admit(publish('later/a/b'))
    expect(outcome && 'kept' in outcome).toBe(true)
    await (outcome as { kept: Promise<void> }).kept
    expect(events).toEqual(['acl a/b', 'quota a/b', 'keep later/a/b'])
  })

  it('leaves other publishes alone', () => {
    const events: string[] = []
    expect(chain(events).admit(publish('now/x'))).toBeUndefined()
    expect(events).toEqual(['acl now/x', 'quota now/x', 'admit now/x'])
  })

  it('keeps nothing that authorize refuses, and refuses before authorize what the claimer refuses', () => {
    const events: string[] = []
    const c = chain(events)
    expect(c.admit(publish('later/denied/x'))).toEqual({ reason: 'acl: no', drop: true })
    expect(c.admit(publish('later/bad'))).toEqual({ reason: 'later: malformed' })
    expect(events).toEqual(['acl denied/x'])
  })

  it('passes on a failure to keep (the broker closes the connection, unacknowledged)', async () => {
    const outcome = chain([], () => Promise.reject(new Error('full'))).admit(publish('later/x'))
    await expect((outcome as { kept: Promise<void> }).kept).rejects.toThrow('full')
  })

  it('refuses a will that a hook would claim, at CONNECT', () => {
    const c = chain([])
    expect(c.authorizeWill(publish('later/x', { origin: 'will' }))).toEqual({ reason: 'later: a will cannot be kept to publish later' })
    expect(c.authorizeWill(publish('now/x', { origin: 'will' }))).toBeUndefined()
  })

  it('takes claim hooks in the admit stage only', () => {
    expect(() => new HookChain([{ name: 'x', stage: 'authorize', claim: () => undefined }])).toThrow(/claim belongs to the admit stage/)
  })
})
