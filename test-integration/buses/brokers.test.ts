import { describeWithService, requireEndpoint } from '../setup/services.ts'
import { crossProcessBusTests } from './cross-process.ts'

describeWithService('rabbitmq', 'buses across processes on RabbitMQ', () => {
  crossProcessBusTests(() => requireEndpoint('rabbitmq'))
})

describeWithService('kafka', 'buses across processes on Kafka', () => {
  crossProcessBusTests(() => `kafka://${requireEndpoint('kafka').split(',')[0]}`)
})

describeWithService('sqs', 'buses across processes on SQS', () => {
  crossProcessBusTests(() => `sqs://${new URL(requireEndpoint('sqs')).host}`, { takeoverMs: 45_000 })
})
