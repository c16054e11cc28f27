/**
 * Where alert notifications go: a webhook (generic JSON or a Slack incoming-webhook message), the
 * log, and an `alert.<name>` event on the bus. A channel's `send` may reject; the engine counts
 * it. None of them is ever awaited by an evaluation.
 */
import {
  ConfigurationError,
  type EventBackend,
  type JsonValue,
  type Logger,
  MAX_TOPIC_LENGTH,
} from '@omnibus/core'
import { backoffDelay, type ResolvedRetryPolicy } from '@omnibus/core/backend'
import { formatDuration, parseDuration } from './config.ts'
import type { AlertChannel, AlertNotification, Duration } from './types.ts'

/** Options of {@link webhookChannel}. */
export interface WebhookChannelOptions {
  readonly url: string
  /** @default 'webhook' */
  readonly name?: string
  /** `json`: the notification as it is; `slack`: a Slack incoming-webhook message. @default 'json' */
  readonly format?: 'json' | 'slack'
  /** Per attempt. @default '5s' */
  readonly timeout?: Duration
  /** Attempts after the first on a network error, a timeout, a 429 or a 5xx. @default 2 */
  readonly retries?: number
  /** Delay before the first retry, doubled for each next one (with 20 % jitter). @default 250 */
  readonly retryDelayMs?: number
  readonly headers?: Readonly<Record<string, string>>
}

/** A webhook answered with a status that will not get better by retrying, or kept failing. */
export class WebhookDeliveryError extends Error {
  /** The last HTTP status, when there was a response. */
  readonly status: number | undefined
  readonly attempts: number

  constructor(message: string, status: number | undefined, attempts: number, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = 'WebhookDeliveryError'
    this.status = status
    this.attempts = attempts
  }
}

// Slack's mrkdwn gives &, < and > a meaning: text from rules and labels is escaped.
function slackEscape(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`
}

function formatNumber(value: number): string {
  if (Number.isInteger(value)) return String(value)
  return String(Number(value.toPrecision(4)))
}

/**
 * A Slack incoming-webhook message for a notification: `text` (what the push notification and
 * clients without blocks show) and Block Kit `blocks` (a header, the message with severity, value,
 * threshold and labels as fields, and the times), within Slack's block size limits.
 */
export function slackPayload(n: AlertNotification): { text: string; blocks: JsonValue[] } {
  const firing = n.status === 'firing'
  const icon = firing ? (n.severity === 'critical' ? ':rotating_light:' : ':warning:') : ':white_check_mark:'
  const status = firing ? 'FIRING' : 'RESOLVED'
  const fields: JsonValue[] = [
    { type: 'mrkdwn', text: `*Severity*\n${n.severity}` },
    { type: 'mrkdwn', text: `*Value*\n${formatNumber(n.value)}` },
    { type: 'mrkdwn', text: `*Threshold*\n${formatNumber(n.threshold)}` },
  ]
  // A section holds at most 10 fields.
  for (const [key, value] of Object.entries(n.labels).slice(0, 7)) {
    fields.push({ type: 'mrkdwn', text: clip(`*${slackEscape(key)}*\n${slackEscape(value)}`, 2000) })
  }
  const times = firing ? `since ${n.startsAt}` : `from ${n.startsAt} to ${n.endsAt ?? ''}`
  return {
    text: clip(`${icon} [${status}] ${slackEscape(n.rule)} (${n.severity}): ${slackEscape(n.message)}`, 3000),
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: clip(`${status}: ${n.rule}`, 150) } },
      { type: 'section', text: { type: 'mrkdwn', text: clip(slackEscape(n.message), 3000) }, fields },
      {
        type: 'context',
        elements: [{ type: 'mrkdwn', text: clip(`${times} · key \`${slackEscape(n.key)}\``, 3000) }],
      },
    ],
  }
}

function retryable(status: number): boolean {
  return status === 408 || status === 429 || status >= 500
}

/**
 * POSTs each notification as JSON to `url`, with a timeout per attempt and a few retries with
 * backoff on network errors, timeouts, 429 and 5xx. Rejects with a {@link WebhookDeliveryError}
 * when delivery failed; the message never contains the URL (webhook URLs carry secrets).
 */
export function webhookChannel(options: WebhookChannelOptions): AlertChannel {
  let url: URL
  try {
    url = new URL(options.url)
  } catch {
    throw new ConfigurationError('webhookChannel: "url" must be an http:// or https:// URL')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigurationError('webhookChannel: "url" must be an http:// or https:// URL')
  }
  const timeoutMs = parseDuration(options.timeout ?? 5000)
  if (timeoutMs === undefined || timeoutMs <= 0) {
    throw new ConfigurationError(
      `webhookChannel: "timeout" must be a positive duration, got ${String(options.timeout)}`,
    )
  }
  const retries = options.retries ?? 2
  if (!Number.isInteger(retries) || retries < 0) {
    throw new ConfigurationError(
      `webhookChannel: "retries" must be an integer ≥ 0, got ${String(options.retries)}`,
    )
  }
  const policy: ResolvedRetryPolicy = {
    maxAttempts: retries + 1,
    initialDelayMs: options.retryDelayMs ?? 250,
    maxDelayMs: 10_000,
    multiplier: 2,
    jitter: 0.2,
  }
  const format = options.format ?? 'json'
  const target = url.href
  // What errors may say about the receiver: its origin, never the path or query that hold the token.
  const origin = url.origin
  const headers = { 'content-type': 'application/json', ...options.headers }
  return {
    name: options.name ?? 'webhook',
    async send(n) {
      const body = JSON.stringify(format === 'slack' ? slackPayload(n) : n)
      let lastStatus: number | undefined
      let lastError: unknown
      for (let attempt = 1; attempt <= policy.maxAttempts; attempt++) {
        if (attempt > 1)
          await new Promise((resolve) => setTimeout(resolve, backoffDelay(policy, attempt - 1)))
        try {
          const res = await fetch(target, {
            method: 'POST',
            headers,
            body,
            signal: AbortSignal.timeout(timeoutMs),
          })
          // The body is read so the connection can be reused, and ignored.
          await res.arrayBuffer().catch(() => undefined)
          if (res.ok) return
          lastStatus = res.status
          lastError = undefined
          if (!retryable(res.status)) {
            throw new WebhookDeliveryError(`webhook ${origin} answered ${res.status}`, res.status, attempt)
          }
        } catch (err) {
          if (err instanceof WebhookDeliveryError) throw err
          lastStatus = undefined
          lastError = err
        }
      }
      const why =
        lastStatus !== undefined
          ? `answered ${lastStatus}`
          : (lastError as Error)?.name === 'TimeoutError'
            ? `did not answer within ${formatDuration(timeoutMs)}`
            : `could not be reached (${(lastError as Error)?.message ?? String(lastError)})`
      throw new WebhookDeliveryError(
        `webhook ${origin} ${why} after ${policy.maxAttempts} attempt${policy.maxAttempts === 1 ? '' : 's'}`,
        lastStatus,
        policy.maxAttempts,
        lastError,
      )
    },
  }
}

/**
 * Writes each notification to `logger` with its fields: firing at `error` (critical), `warn`
 * (warning) or `info` (info); resolved at `warn`, or `info` for an info rule.
 */
export function logChannel(logger: Logger, options: { readonly name?: string } = {}): AlertChannel {
  return {
    name: options.name ?? 'log',
    async send(n) {
      const fields = {
        rule: n.rule,
        severity: n.severity,
        labels: n.labels,
        value: n.value,
        threshold: n.threshold,
        startsAt: n.startsAt,
        endsAt: n.endsAt,
      }
      const text = `alert ${n.status}: ${n.rule}: ${n.message}`
      if (n.severity === 'info') logger.info(text, fields)
      // A resolution is logged where loggers that drop `info` (the server's default) still show it.
      else if (n.severity === 'warning' || n.status === 'resolved') logger.warn(text, fields)
      else logger.error(text, fields)
    },
  }
}

const PREFIX = 'alert.'

/**
 * The topic an alert is published on: `alert.` and the rule name made into one topic segment
 * (every character outside `[A-Za-z0-9_-]`, dots included, becomes `_`; cut to the topic length
 * limit). `"p99 > 2s"` → `alert.p99___2s`.
 */
export function alertTopic(ruleName: string): string {
  const segment = ruleName.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, MAX_TOPIC_LENGTH - PREFIX.length)
  return PREFIX + (segment.length === 0 ? '_' : segment)
}

/** Options of {@link busChannel}. */
export interface BusChannelOptions {
  /** @default 'bus' */
  readonly name?: string
  /** The events' `source`. @default 'omnibus-serve' */
  readonly source?: string
}

/**
 * Publishes each notification as the data of an `alert.<name>` event (see {@link alertTopic}) on
 * `backend`, so agents can subscribe to `alert.*` and react. The event's `partitionKey` is the
 * de-duplication key, so firing and resolved of one alert stay in order where the backend orders.
 */
export function busChannel(backend: EventBackend, options: BusChannelOptions = {}): AlertChannel {
  const source = options.source ?? 'omnibus-serve'
  return {
    name: options.name ?? 'bus',
    async send(n) {
      await backend.publish({
        topic: alertTopic(n.rule),
        data: n as unknown as JsonValue,
        source,
        partitionKey: n.key,
      })
    },
  }
}
