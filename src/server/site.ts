// The site the scheduler plans against is whatever the executor runs on: the 1,152-GPU twin for
// `simulated`, this host's GPUs for `local`. A consortium written for the big site is scaled to a
// small one so that the demo consortium also runs on a workstation. A site file that names the
// executor's own nodes (`fabrik site import`) is that machine's description and is used as written.
import type { Consortium, Member } from '../core/consortium.js';
import type { Node, NvlinkDomain, Site } from '../core/site.js';
import type { ExecNode } from '../executors/executor.js';

/** The site file describes a machine the executor does not offer as the file says. */
export class SiteMismatchError extends Error {
  override readonly name = 'SiteMismatchError';
}

/**
 * The site the scheduler plans against on a real executor. A file that names any of the executor's
 * nodes was written for this machine (by `fabrik site import` or by hand): its domains, zones and
 * states are kept, and every node it names must be offered with at least the GPUs it says, since
 * a job placed on a GPU the executor lacks would never start. A file that names none of them
 * (se-factory on Slurm or the local host) describes another machine: the executor's nodes are the
 * site, as `siteFromNodes` makes it. Executor nodes the file leaves out are not scheduled on.
 */
export function siteForExecutor(name: string, fileSite: Site, nodes: readonly ExecNode[]): Site {
  const offered = new Map(nodes.map((n) => [n.name, n.gpus.length]));
  if (!fileSite.nodes.some((n) => offered.has(n.name))) return siteFromNodes(name, nodes, fileSite);
  for (const node of fileSite.nodes) {
    const gpus = offered.get(node.name);
    if (gpus === undefined) {
      const names = [...offered.keys()];
      const shown = names.length > 8 ? `${names.slice(0, 8).join(', ')}, … (${names.length})` : names.join(', ');
      throw new SiteMismatchError(
        `site ${fileSite.name}: node ${node.name} is not a node of the ${name} executor (it has ${shown})`,
      );
    }
    if (node.gpus > gpus) {
      throw new SiteMismatchError(
        `site ${fileSite.name}: node ${node.name} has ${node.gpus} GPUs in the site file but ${gpus} in the ${name} executor`,
      );
    }
  }
  return fileSite;
}

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
    // A member that may borrow at all may still run a one-GPU job on a small host: scaled down, a
    // 0.25-GPU borrowing limit would leave it unable to run anything, and its jobs refused.
    borrowingLimitGpus:
      m.borrowingLimitGpus === null || m.borrowingLimitGpus === 0
        ? m.borrowingLimitGpus
        : Math.max(m.borrowingLimitGpus * factor, Math.min(m.borrowingLimitGpus, 1 - m.entitlementGpus * factor)),
  }));
  // A rule of "576 GPUs" on the big site is the same share of the machine at hand.
  const reservations = c.reservations && { ...c.reservations, maxGpus: scale(c.reservations.maxGpus) };
  return { ...c, members, ...(reservations ? { reservations } : {}) };
}
