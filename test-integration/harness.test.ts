import { describe, expect, it } from 'vitest'
import { enableHint, requiredServices, SERVICES } from './setup/catalog.ts'
import { serviceEndpoint } from './setup/services.ts'

describe('integration harness', () => {
  it('parses OMNIBUS_IT_REQUIRE and rejects unknown names with the list of services', () => {
    expect(requiredServices(' Redis, kafka ,')).toEqual(['redis', 'kafka'])
    expect(requiredServices(undefined)).toEqual([])
    expect(() => requiredServices('redis,postgres')).toThrow(/"postgres".*redis, rabbitmq, kafka, sqs/)
  })

  it('says how to enable each service', () => {
    for (const s of SERVICES) expect(enableHint(s.name)).toContain(s.env)
  })

  it('resolved every service that OMNIBUS_IT_REQUIRE names', () => {
    for (const name of requiredServices(process.env.OMNIBUS_IT_REQUIRE)) {
      expect(serviceEndpoint(name), `${name} endpoint`).toMatch(/\S/)
    }
  })
})
