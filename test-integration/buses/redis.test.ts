import { describeWithService, requireEndpoint } from '../setup/services.ts'
import { crossProcessBusTests } from './cross-process.ts'

describeWithService('redis', 'buses across processes on Redis', () => {
  crossProcessBusTests(() => requireEndpoint('redis'))
})
