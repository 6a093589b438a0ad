// Prometheus metrics: what an operator graphs and alerts on. Gauges read the scheduling loop's
// mirror when scraped, so they cost nothing between scrapes.
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Consortium } from '../core/consortium.js';
import type { Controller } from './controller.js';

export interface ServerMetrics {
  readonly registry: Registry;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly submissions: Gauge;
}

export function createMetrics(controller: Controller, consortium: Consortium): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'fabrik_process_' });
  new Gauge({
    name: 'fabrik_jobs_pending',
    help: 'Jobs waiting to start.',
    registers: [registry],
    collect() {
      this.set(controller.pendingCount());
    },
  });
  new Gauge({
    name: 'fabrik_gpus_running',
    help: 'GPUs held by running jobs, per member.',
    labelNames: ['member'],
    registers: [registry],
    collect() {
      const held = controller.runningGpus();
      for (const m of consortium.members) this.set({ member: m.id }, held[m.id] ?? 0);
    },
  });
  new Gauge({
    name: 'fabrik_gpus_entitled',
    help: "Each member's entitlement in GPUs.",
    labelNames: ['member'],
    registers: [registry],
    collect() {
      for (const m of consortium.members) this.set({ member: m.id }, m.entitlementGpus);
    },
  });
  new Gauge({
    name: 'fabrik_scheduler_cycle_seconds',
    help: 'Duration of the last scheduling cycle.',
    registers: [registry],
    collect() {
      this.set(controller.stats.lastCycleSeconds);
    },
  });
  new Gauge({
    name: 'fabrik_scheduler_cycles',
    help: 'Scheduling cycles run since start.',
    registers: [registry],
    collect() {
      this.set(controller.stats.cycles);
    },
  });
  const submissions = new Gauge({ name: 'fabrik_jobs_submitted', help: 'Jobs submitted since start.', registers: [registry] });
  const httpDuration = new Histogram({
    name: 'fabrik_http_request_duration_seconds',
    help: 'API latency by route and status.',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  return { registry, httpDuration, submissions };
}
