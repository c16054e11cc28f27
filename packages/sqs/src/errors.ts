/**
 * Mapping of AWS SDK and socket errors onto the Omnibus error taxonomy, so callers can branch on
 * `instanceof` and `retryable` without knowing the SDK.
 */
import {
  ConfigurationError,
  ConnectionError,
  OmnibusError,
  PublishError,
  SubscriptionError,
  TimeoutError,
} from '@omnibus/core'

const BACKEND = 'sqs'

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
  'UND_ERR_SOCKET',
])

const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'ProvisionedThroughputExceededException',
  'OverLimit',
  'KmsThrottled',
  'AWS.SimpleQueueService.RequestThrottled',
])

const CREDENTIALS = new Set([
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'SignatureDoesNotMatch',
  'AccessDenied',
  'AccessDeniedException',
  'InvalidSecurity',
  'MissingAuthenticationToken',
  'ExpiredToken',
  'CredentialsProviderError',
])

const BAD_REQUEST = new Set([
  'InvalidParameterValue',
  'InvalidParameterValueException',
  'InvalidAttributeName',
  'InvalidAttributeValue',
  'InvalidMessageContents',
  'InvalidBatchEntryId',
  'BatchEntryIdsNotDistinct',
  'BatchRequestTooLong',
  'TooManyEntriesInBatchRequest',
  'EmptyBatchRequest',
  'MissingParameter',
  'UnsupportedOperation',
  'ValidationError',
  'ValidationException',
  'QueueAlreadyExists',
  'QueueNameExists',
  'InvalidAddress',
])

interface AwsLikeError {
  readonly name?: string
  readonly code?: string
  readonly Code?: string
  readonly message?: string
  readonly $retryable?: { readonly throttling?: boolean }
  readonly $fault?: 'client' | 'server'
  readonly $metadata?: { readonly httpStatusCode?: number }
  readonly cause?: unknown
}

function errorCode(e: AwsLikeError): string {
  return e.Code ?? e.name ?? e.code ?? 'Error'
}

function networkCode(error: unknown, depth = 0): string | undefined {
  if (error === null || typeof error !== 'object' || depth > 4) return undefined
  const e = error as AwsLikeError & { errors?: unknown[] }
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return e.code
  if (Array.isArray(e.errors)) {
    for (const inner of e.errors) {
      const c = networkCode(inner, depth + 1)
      if (c !== undefined) return c
    }
  }
  return networkCode(e.cause, depth + 1)
}

/** Whether the SDK error says the queue does not exist (deleted, or never created). */
export function isQueueMissing(error: unknown): boolean {
  if (error === null || typeof error !== 'object') return false
  const code = errorCode(error as AwsLikeError)
  return (
    code === 'QueueDoesNotExist' ||
    code === 'AWS.SimpleQueueService.NonExistentQueue' ||
    code === 'NonExistentQueue'
  )
}

/** What the failing call was doing; picks the error class for failures that are not the network's. */
export type SqsOperation = 'connect' | 'publish' | 'subscribe' | 'receive' | 'admin'

/**
 * Maps a native error (AWS SDK service exception, socket error, abort) onto an Omnibus error:
 * network failures → retryable `ConnectionError`; throttling and 5xx (`$retryable`, `$fault:
 * 'server'`) → retryable; bad credentials → `ConnectionError` (not retryable); invalid requests
 * → `ConfigurationError`; timeouts → `TimeoutError`; anything else → `PublishError` or
 * `SubscriptionError` by operation. An Omnibus error passes through unchanged. `where` names the
 * endpoint in messages; it must not contain secrets.
 */
export function classifyError(error: unknown, operation: SqsOperation, where = 'SQS'): OmnibusError {
  if (error instanceof OmnibusError) return error
  const e = (error ?? {}) as AwsLikeError
  const code = errorCode(e)
  const message = typeof e.message === 'string' && e.message.length > 0 ? e.message : String(error)
  const net = networkCode(error)
  if (net !== undefined) {
    return new ConnectionError(
      `cannot reach ${where} (${net}): check that the endpoint is right and the server is running`,
      { backend: BACKEND, code: net, retryable: true, cause: error },
    )
  }
  if (code === 'TimeoutError' || code === 'RequestTimeout' || code === 'RequestTimeoutException') {
    return new TimeoutError(`${where} did not answer in time (${code}): ${message}`, {
      backend: BACKEND,
      cause: error,
    })
  }
  if (THROTTLING.has(code) || e.$retryable?.throttling === true) {
    return classByOperation(operation, `${where} throttled the request (${code}); retry later: ${message}`, {
      code: 'THROTTLED',
      retryable: true,
      cause: error,
    })
  }
  if (CREDENTIALS.has(code)) {
    return new ConnectionError(
      `${where} refused the credentials (${code}): check the AWS credentials and permissions`,
      { backend: BACKEND, code: 'AUTH_FAILED', retryable: false, cause: error },
    )
  }
  if (isQueueMissing(error)) {
    return classByOperation(operation, `queue does not exist on ${where}: ${message}`, {
      code: 'QUEUE_MISSING',
      retryable: false,
      cause: error,
    })
  }
  if (BAD_REQUEST.has(code)) {
    return new ConfigurationError(`${where} rejected the request (${code}): ${message}`, {
      backend: BACKEND,
      code: 'INVALID_REQUEST',
      cause: error,
    })
  }
  const status = e.$metadata?.httpStatusCode
  const retryable =
    e.$retryable !== undefined || e.$fault === 'server' || (status !== undefined && status >= 500)
  return classByOperation(operation, `${where} request failed (${code}): ${message}`, {
    code: retryable ? 'SERVER_ERROR' : 'SQS_ERROR',
    retryable,
    cause: error,
  })
}

function classByOperation(
  operation: SqsOperation,
  message: string,
  options: { code: string; retryable: boolean; cause: unknown },
): OmnibusError {
  const opts = { ...options, backend: BACKEND }
  switch (operation) {
    case 'publish':
      return new PublishError(message, opts)
    case 'connect':
      return new ConnectionError(message, opts)
    case 'subscribe':
    case 'receive':
      return new SubscriptionError(message, opts)
    default:
      return new OmnibusError(message, opts)
  }
}
