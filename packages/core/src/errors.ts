/**
 * The Omnibus error taxonomy. Every error a backend or bus raises is an {@link OmnibusError}
 * with a stable `code`, the `backend` that raised it, a `retryable` flag that tells the caller
 * whether trying the same call again may succeed, and the native `cause`.
 */

/** Options shared by every Omnibus error constructor. */
export interface OmnibusErrorOptions {
  /** Stable machine-readable code, e.g. `CONNECTION_REFUSED`. */
  readonly code?: string
  /** Name of the backend that raised the error (`redis`, `kafka`, ...). */
  readonly backend?: string
  /** Whether repeating the same operation later may succeed. */
  readonly retryable?: boolean
  /** The underlying error, if any. */
  readonly cause?: unknown
}

/** Base class of every error Omnibus raises. */
export class OmnibusError extends Error {
  /** Stable machine-readable code. */
  readonly code: string
  /** Backend that raised the error, when one did. */
  readonly backend: string | undefined
  /** Whether repeating the same operation later may succeed. */
  readonly retryable: boolean

  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = options.code ?? 'OMNIBUS_ERROR'
    this.backend = options.backend
    this.retryable = options.retryable ?? false
  }
}

/** The broker cannot be reached, refused us, or the connection dropped. Usually retryable. */
export class ConnectionError extends OmnibusError {
  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(message, { code: 'CONNECTION_FAILED', retryable: true, ...options })
  }
}

/** A publish was not accepted by the backend. */
export class PublishError extends OmnibusError {
  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(message, { code: 'PUBLISH_FAILED', ...options })
  }
}

/** A subscription could not be created or failed while running. */
export class SubscriptionError extends OmnibusError {
  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(message, { code: 'SUBSCRIPTION_FAILED', ...options })
  }
}

/** A payload could not be encoded, or a wire message could not be decoded into an envelope. */
export class SerializationError extends OmnibusError {
  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(message, { code: 'SERIALIZATION_FAILED', retryable: false, ...options })
  }
}

/** An option or URL is invalid. Never retryable: fix the configuration. */
export class ConfigurationError extends OmnibusError {
  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(message, { code: 'INVALID_CONFIGURATION', retryable: false, ...options })
  }
}

/** The backend does not offer what was asked (a guarantee, groups, replay, ...). */
export class CapabilityError extends OmnibusError {
  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(message, { code: 'CAPABILITY_UNSUPPORTED', retryable: false, ...options })
  }
}

/** The encoded event is larger than the backend's declared `maxPayloadBytes`. */
export class PayloadTooLargeError extends OmnibusError {
  /** Size of the encoded event in bytes. */
  readonly sizeBytes: number
  /** The limit that was exceeded. */
  readonly limitBytes: number

  constructor(sizeBytes: number, limitBytes: number, options: OmnibusErrorOptions = {}) {
    super(
      `encoded event is ${sizeBytes} bytes, over the ${options.backend ?? 'backend'} limit of ${limitBytes} bytes: ` +
        'send a smaller payload, or store the data elsewhere and publish a reference to it',
      { code: 'PAYLOAD_TOO_LARGE', retryable: false, ...options },
    )
    this.sizeBytes = sizeBytes
    this.limitBytes = limitBytes
  }
}

/** A topic or pattern does not follow the topic grammar. */
export class InvalidTopicError extends OmnibusError {
  /** The rejected topic or pattern. */
  readonly topic: string

  constructor(topic: string, message: string, options: OmnibusErrorOptions = {}) {
    super(message, { code: 'INVALID_TOPIC', retryable: false, ...options })
    this.topic = topic
  }
}

/** An operation did not complete within its deadline (for example a `request` without a reply). */
export class TimeoutError extends OmnibusError {
  constructor(message: string, options: OmnibusErrorOptions = {}) {
    super(message, { code: 'TIMEOUT', retryable: true, ...options })
  }
}

/** The backend is not connected (never connected, or already disconnected). */
export class NotConnectedError extends OmnibusError {
  constructor(backend: string, action: string) {
    super(`cannot ${action}: the ${backend} backend is not connected; call connect() first`, {
      code: 'NOT_CONNECTED',
      backend,
      retryable: false,
    })
  }
}

/** Whether a value is an Omnibus error that may succeed when retried. */
export function isRetryable(error: unknown): boolean {
  return error instanceof OmnibusError && error.retryable
}
