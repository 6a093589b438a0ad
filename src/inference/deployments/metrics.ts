// Deployment gauges for Prometheus, read from the controller's memory when scraped (nothing
// between scrapes): what the autoscaler wants, what is ready, and the load it scales on.
import { Gauge, type Registry } from 'prom-client';
import type { DeploymentController, ReplicaStatus } from './controller.js';

export function deploymentMetrics(registry: Registry, c: DeploymentController): void {
  const gauge = (name: string, help: string, value: (replicas: ReplicaStatus[], target: number) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['member', 'model'],
      registers: [registry],
      collect() {
        // Deleted deployments leave no stale series.
        this.reset();
        for (const d of c.active()) this.set({ member: d.member, model: d.model }, value(c.replicaStatus(d.id), d.target));
      },
    });
  gauge(
    'fabrik_deployment_target_replicas',
    'Replicas each deployment wants now (between min and max on load; 0 while scaled to zero).',
    (_r, target) => target,
  );
  gauge(
    'fabrik_deployment_ready_replicas',
    'Replicas that answered their last health check (the ones the gateway routes to).',
    (r) => r.filter((x) => x.healthy).length,
  );
  gauge(
    'fabrik_deployment_requests_in_flight',
    'Requests in flight on the replicas of each deployment, as the gateway reports them.',
    (r) => r.reduce((n, x) => n + x.inFlight, 0),
  );
  gauge(
    'fabrik_deployment_queued_tokens',
    'Tokens still to generate on the replicas of each deployment (their reserved worst cases).',
    (r) => r.reduce((n, x) => n + x.queuedTokens, 0),
  );
}
