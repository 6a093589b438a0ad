// The machine a factory runs: SuperPODs → NVLink domains (racks) → nodes (compute trays) → GPUs.
// Nodes and domains are addressed by index: the scheduler's hot loops walk typed arrays.

export type NodeState = 'up' | 'draining' | 'down' | 'maintenance';
export const NODE_STATES: readonly NodeState[] = ['up', 'draining', 'down', 'maintenance'];

/** Mission Control / Base Command Manager style health verdicts. */
export type HealthVerdict = 'PASS' | 'INFO' | 'WARNING' | 'CRITICAL' | 'UNKNOWN';

export interface GpuModel {
  readonly name: string;
  readonly memoryGb: number;
  readonly watts: number;
  /** Peak dense BF16 tensor throughput per GPU, in TFLOP/s (model cards estimate training FLOPs from it). */
  readonly peakDenseBf16Tflops?: number;
}

export interface Node {
  readonly name: string;
  readonly gpus: number;
  readonly state: NodeState;
  readonly health: HealthVerdict;
  /** Index into `Site.domains`. */
  readonly domain: number;
}

export interface NvlinkDomain {
  readonly name: string;
  readonly superpod: string;
  readonly zone: string;
  /** Indices into `Site.nodes`. */
  readonly nodes: readonly number[];
  readonly gpus: number;
}

export interface Site {
  readonly name: string;
  readonly pue: number;
  readonly carbonGramsPerKwh: number;
  readonly gpu: GpuModel;
  readonly superpods: readonly { readonly name: string; readonly domains: readonly number[] }[];
  readonly domains: readonly NvlinkDomain[];
  readonly nodes: readonly Node[];
  readonly zones: readonly string[];
  readonly totalGpus: number;
  /** The largest node; a GPU count is shaped into nodes of this size. */
  readonly maxGpusPerNode: number;
}

/** New work may be placed only on nodes that are up and not draining. */
export function isSchedulable(node: Node): boolean {
  return node.state === 'up';
}

/** A node that is gone: the work on it is lost and must be requeued. */
export function isFailed(node: Node): boolean {
  return node.state === 'down';
}

export function nodeIndex(site: Site): Map<string, number> {
  return new Map(site.nodes.map((n, i) => [n.name, i]));
}

/** Returns a copy of the site with some nodes in another state (drain, failure, repair). */
export function withNodeStates(site: Site, states: Readonly<Record<string, NodeState>>): Site {
  const nodes = site.nodes.map((n) => (states[n.name] ? { ...n, state: states[n.name]! } : n));
  return { ...site, nodes };
}
