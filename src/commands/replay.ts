import { Presets, SingleBar } from 'cli-progress'
import type { ReplayRequestBody, ReplayStatus } from '../http/wire.js'
import { ApiClient, parsePosition, sleep, type ApiCredentials } from './api-client.js'

export interface ReplayCliOptions extends ApiCredentials {
  url: string
  from: string
  to?: string
  topicPrefix: string
  partitions?: number[]
}

const POLL_MS = 200

/** `culex replay`: starts a replay job on the gateway and follows it (a progress bar on a TTY). */
export async function replay(stream: string, options: ReplayCliOptions, report: (line: string) => void): Promise<ReplayStatus> {
  const api = new ApiClient(options.url, options)
  const body: ReplayRequestBody = {
    from: parsePosition(options.from, '--from'),
    to: options.to === undefined ? undefined : parsePosition(options.to, '--to'),
    topicPrefix: options.topicPrefix,
    partitions: options.partitions
  }
  let status = await api.request<ReplayStatus>('POST', `/api/v1/streams/${encodeURIComponent(stream)}/replay`, body)
  const bar = process.stderr.isTTY ? new SingleBar({ format: 'replay [{bar}] {percentage}% {value}/{total} records' }, Presets.shades_classic) : null
  bar?.start(status.total, status.published)
  while (status.state === 'running') {
    await sleep(POLL_MS)
    status = await api.request<ReplayStatus>('GET', `/api/v1/replays/${status.id}`)
    bar?.update(status.published)
  }
  bar?.stop()
  report(
    `replay ${status.state}: ${status.published} of ${status.total} records of ${stream} published under ${options.topicPrefix}${status.error ? `: ${status.error}` : ''}`
  )
  return status
}
