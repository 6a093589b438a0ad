// The site the scheduler plans against is whatever the executor runs on: the 1,152-GPU twin for
// `simulated`, this host's GPUs for `local`. A consortium written for the big site is scaled to a
// small one so that the demo consortium also runs on a workstation.
import type { Consortium, Member } from '../core/consortium.js';
import type { Node, NvlinkDomain, Site } from '../core/site.js';
import type { ExecNode } from '../executors/executor.js';

/** A site from the executor's nodes: one NVLink domain per distinct domain name. */
export function siteFromNodes(name: string, nodes: readonly ExecNode[], like: Site): Site {
  const domains: NvlinkDomain[] = [];
  const byName = new Map<string, number>();
  const siteNodes: Node[] = [];
  for (const n of nodes) {
    let d = byName.get(n.domain);
    if (d === undefined) {
      d = domains.length;
      byName.set(n.domain, d);
      domains.push({ name: n.domain, superpod: name, zone: n.zone, nodes: [], gpus: 0 });
    }
    const domain = domains[d];
    domains[d] = { ...domain, nodes: [...domain.nodes, siteNodes.length], gpus: domain.gpus + n.gpus.length };
    siteNodes.push({ name: n.name, gpus: n.gpus.length, state: 'up', health: 'PASS', domain: d });
  }
  return {
    name,
    pue: like.pue,
    carbonGramsPerKwh: like.carbonGramsPerKwh,
    gpu: like.gpu,
    superpods: [{ name, domains: domains.map((_, i) => i) }],
    domains,
    nodes: siteNodes,
    zones: [...new Set(nodes.map((n) => n.zone))],
    totalGpus: siteNodes.reduce((s, n) => s + n.gpus, 0),
    maxGpusPerNode: siteNodes.reduce((m, n) => Math.max(m, n.gpus), 0),
  };
}

/**
 * The consortium with every GPU figure multiplied by `factor` (entitlements stay in proportion;
 * quotas may be fractional, the quota book counts in real numbers). Members bound to a zone the
 * small site lacks keep the binding: their jobs wait with NodesUnavailable, which is the truth.
 */
export function scaleConsortium(c: Consortium, factor: number): Consortium {
  if (factor === 1) return c;
  const scale = (g: number | null) => (g === null ? null : g * factor);
  const members: Member[] = c.members.map((m) => ({
    ...m,
    entitlementGpus: m.entitlementGpus * factor,
    lendingLimitGpus: scale(m.lendingLimitGpus),
    borrowingLimitGpus: scale(m.borrowingLimitGpus),
  }));
  return { ...c, members };
}
