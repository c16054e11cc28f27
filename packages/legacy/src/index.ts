/**
 * @omnibus/legacy — the category/priority `EventBus` of the older API (subscribe by category with
 * a minimum priority, backpressure, sampling, stats, trace context, exporters) and the
 * `EventBusAdapter` that forwards its events to the ObservabilityBus / AgentMessageBus as
 * `category.event_type` topics, and optionally back, without loops.
 */
export {
  type AdapterStats,
  EventBusAdapter,
  type EventBusAdapterOptions,
  LEGACY_HEADERS,
  REVERSED_FROM,
} from './adapter.ts'
export {
  type BackpressureConfig,
  BackpressureError,
  BackpressureStrategy,
  EventBus,
  type EventBusOptions,
  EventCategory,
  EventPriority,
  getEventBus,
  isEventCategory,
  isEventPriority,
  type LegacyEvent,
  type LegacyHandler,
  type LegacyStats,
  type LegacySubscribeOptions,
  legacyToEnvelope,
  legacyTopic,
  type PublishInput,
  type SamplingConfig,
} from './event-bus.ts'
