/**
 * The alert engine's counters in Prometheus form, read at scrape time so a scrape always shows the
 * engine's state at that moment and nothing is counted twice.
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import type { AlertStats } from './engine.ts'

/** Registers collect-on-scrape alert metrics in `registry`, reading `stats()`. */
export function registerAlertMetrics(stats: () => AlertStats, registry: Registry): void {
  const registers = [registry]
  new Gauge({
    name: 'omnibus_serve_alerts',
    help: 'Alerts (rule and label set) firing or pending now, by rule.',
    labelNames: ['rule', 'severity', 'state'],
    registers,
    collect() {
      this.reset()
      for (const r of stats().rules) {
        this.set({ rule: r.name, severity: r.severity, state: 'firing' }, r.firing)
        this.set({ rule: r.name, severity: r.severity, state: 'pending' }, r.pending)
      }
    },
  })
  new Counter({
    name: 'omnibus_serve_alert_notifications_total',
    help: 'Alert notifications by channel and outcome: sent, failed (after retries) or dropped (too many in delivery).',
    labelNames: ['channel', 'outcome'],
    registers,
    collect() {
      this.reset()
      for (const c of stats().channels) {
        for (const outcome of ['sent', 'failed', 'dropped'] as const) {
          // Every series is written, zeros included, so a rate() over it starts at the first scrape.
          this.inc({ channel: c.name, outcome }, c[outcome])
        }
      }
    },
  })
  new Counter({
    name: 'omnibus_serve_alert_notifications_held_total',
    help: 'Firing alerts not notified when they fired because of their rule cooldown.',
    registers,
    collect() {
      this.reset()
      this.inc(stats().suppressed)
    },
  })
  new Counter({
    name: 'omnibus_serve_alert_evaluations_total',
    help: 'Evaluations of the alert rules.',
    registers,
    collect() {
      this.reset()
      this.inc(stats().evaluations)
    },
  })
}
