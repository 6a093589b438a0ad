// Fluid builders for scenarios: job('train-7b').member('pharma').gpus(144).topology('required').
// The same scenarios feed the tests, the benchmark and the simulator.
import type { Consortium, Isolation, Member } from '../core/consortium.js';
import type { Allocation, GangRequest, PendingJob, PriorityClass, RunningJob, Topology } from '../core/job.js';
import type { Node, NodeState, NvlinkDomain, Site } from '../core/site.js';

export class SiteBuilder {
  private spec = { name: 'test-site', superpods: 1, racks: 2, trays: 4, gpusPerTray: 4 };
  private zoneOfRack = new Map<string, string>();
  private states = new Map<string, NodeState>();

  name(n: string): this {
    this.spec.name = n;
    return this;
  }
  superpods(n: number): this {
    this.spec.superpods = n;
    return this;
  }
  racksPerSuperpod(n: number): this {
    this.spec.racks = n;
    return this;
  }
  traysPerRack(n: number): this {
    this.spec.trays = n;
    return this;
  }
  gpusPerTray(n: number): this {
    this.spec.gpusPerTray = n;
    return this;
  }
  /** Puts the named racks (e.g. 'sp1-r02') in a zone; the others are in 'general'. */
  zone(zone: string, ...racks: string[]): this {
    for (const r of racks) this.zoneOfRack.set(r, zone);
    return this;
  }
  node(name: string, state: NodeState): this {
    this.states.set(name, state);
    return this;
  }

  build(): Site {
    const { superpods: P, racks: R, trays: T, gpusPerTray: G } = this.spec;
    const nodes: Node[] = [];
    const domains: NvlinkDomain[] = [];
    const pods: { name: string; domains: number[] }[] = [];
    const zones = new Set<string>(['general']);
    for (let p = 1; p <= P; p++) {
      const pod = { name: `sp${p}`, domains: [] as number[] };
      for (let r = 1; r <= R; r++) {
        const rack = `sp${p}-r${pad(r)}`;
        const zone = this.zoneOfRack.get(rack) ?? 'general';
        zones.add(zone);
        const d = domains.length;
        const idx: number[] = [];
        for (let t = 1; t <= T; t++) {
          const name = `${rack}-t${pad(t)}`;
          idx.push(nodes.length);
          nodes.push({ name, gpus: G, state: this.states.get(name) ?? 'up', health: 'PASS', domain: d });
        }
        domains.push({ name: rack, superpod: pod.name, zone, nodes: idx, gpus: T * G });
        pod.domains.push(d);
      }
      pods.push(pod);
    }
    return {
      name: this.spec.name,
      pue: 1.1,
      carbonGramsPerKwh: 31,
      gpu: { name: 'GB300', memoryGb: 288, watts: 1400 },
      superpods: pods,
      domains,
      nodes,
      zones: [...zones],
      totalGpus: nodes.length * G,
      maxGpusPerNode: G,
    };
  }
}

export interface MemberOptions {
  entitlement: number;
  lendingLimit?: number | null;
  borrowingLimit?: number | null;
  isolation?: Isolation;
  zone?: string | null;
}

export class ConsortiumBuilder {
  private members: Member[] = [];
  private halfLifeHours = 168;

  member(id: string, o: MemberOptions): this {
    this.members.push({
      id,
      name: id,
      entitlementGpus: o.entitlement,
      lendingLimitGpus: o.lendingLimit ?? null,
      borrowingLimitGpus: o.borrowingLimit ?? null,
      isolation: o.isolation ?? 'none',
      zone: o.zone ?? null,
      projects: [`${id}-default`],
    });
    return this;
  }
  halfLife(hours: number): this {
    this.halfLifeHours = hours;
    return this;
  }
  build(): Consortium {
    return { name: 'test-consortium', members: this.members, fairShare: { halfLifeHours: this.halfLifeHours } };
  }
}

export class JobBuilder {
  private j: {
    -readonly [K in keyof PendingJob]: PendingJob[K];
  };

  constructor(id: string) {
    this.j = {
      id,
      member: 'pharma',
      project: 'default',
      priorityClass: 'training',
      gang: { gpus: 1 },
      topology: 'preferred',
      isolation: { exclusive: false, zone: null },
      walltimeSeconds: 3600,
      minRuntimeSeconds: 0,
      checkpointIntervalSeconds: null,
      gracePeriodSeconds: 0,
      submittedAt: 0,
      holdSince: null,
    };
  }

  member(m: string): this {
    this.j.member = m;
    this.j.project = `${m}-default`;
    return this;
  }
  gpus(n: number): this {
    this.j.gang = { gpus: n };
    return this;
  }
  gang(nodes: number, gpusPerNode: number): this {
    this.j.gang = { nodes, gpusPerNode } satisfies GangRequest;
    return this;
  }
  topology(t: Topology): this {
    this.j.topology = t;
    return this;
  }
  priority(c: PriorityClass): this {
    this.j.priorityClass = c;
    return this;
  }
  walltime(seconds: number): this {
    this.j.walltimeSeconds = seconds;
    return this;
  }
  minRuntime(seconds: number): this {
    this.j.minRuntimeSeconds = seconds;
    return this;
  }
  /** Work kept from earlier runs (a requeued job's attained service). */
  attained(seconds: number): this {
    this.j.attainedSeconds = seconds;
    return this;
  }
  checkpointEvery(seconds: number): this {
    this.j.checkpointIntervalSeconds = seconds;
    return this;
  }
  grace(seconds: number): this {
    this.j.gracePeriodSeconds = seconds;
    return this;
  }
  submitted(at: number): this {
    this.j.submittedAt = at;
    return this;
  }
  exclusive(): this {
    this.j.isolation = { ...this.j.isolation, exclusive: true };
    return this;
  }
  zone(z: string): this {
    this.j.isolation = { ...this.j.isolation, zone: z };
    return this;
  }
  held(since: number): this {
    this.j.holdSince = since;
    return this;
  }

  build(): PendingJob {
    return { ...this.j };
  }

  /** The same job, already running on these GPUs since `startedAt`. */
  running(startedAt: number, allocation: Allocation[], lastCheckpointAt: number | null = null): RunningJob {
    const { holdSince: _h, ...spec } = this.j;
    return { ...spec, startedAt, allocation, lastCheckpointAt, preempting: null };
  }
}

export const site = () => new SiteBuilder();
export const consortium = () => new ConsortiumBuilder();
export const job = (id: string) => new JobBuilder(id);

/** Allocation on whole nodes, by node index: onNodes([0,1], 4). */
export function onNodes(nodes: number[], gpus: number): Allocation[] {
  return nodes.map((node) => ({ node, gpus }));
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}
