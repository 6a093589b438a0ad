// Which replica serves a request. Only the key's member's replicas of the model, healthy, accredited
// for the key's classification and in a zone the key and its member allow: none, and the request
// fails closed. Among them, rendezvous hashing on member + prompt prefix sends requests that share
// a prefix to the same replica (its prefix cache is warm) while adding or losing a replica moves
// only its own share; the member is in the hash, so affinity never crosses members. A saturated
// affine replica gives way to the least-loaded one.
import type { Classification } from '../../governance/model.js';
import type { Replica } from '../replicas.js';

/** FNV-1a, 32 bits: fast, and good enough to spread prefixes. */
export function fnv1a(text: string, seed = 0x811c9dc5): number {
  let h = seed;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** murmur3's finalizer: mixes the prefix and replica hashes into a score. */
function mix(a: number, b: number): number {
  let h = (a ^ Math.imul(b, 0x9e3779b1)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export interface RouteNeeds {
  readonly member: string;
  readonly classification: Classification;
  /** Zones the key allows (null: any). */
  readonly keyZones: readonly string[] | null;
  /** The member's zone (null: any). */
  readonly memberZone: string | null;
}

export class Router {
  private readonly idHashes = new Map<string, number>();
  /** Requests in flight per replica id, and tokens still to generate. */
  readonly inFlight = new Map<string, number>();
  readonly queued = new Map<string, number>();
  /** Replicas that failed before the first byte, until when they are skipped. */
  private readonly down = new Map<string, number>();

  constructor(
    private readonly maxInFlight: number,
    private readonly downSeconds: number,
  ) {}

  /** The replicas the request may go to at all (the fail-closed filter). */
  eligible(all: readonly Replica[], n: RouteNeeds, now: number): Replica[] {
    const out: Replica[] = [];
    for (const r of all) {
      if (r.member !== n.member || !r.healthy || !r.accreditations.includes(n.classification)) continue;
      if (n.memberZone !== null && r.zone !== n.memberZone) continue;
      if (n.keyZones !== null && !n.keyZones.includes(r.zone)) continue;
      const until = this.down.get(r.id);
      if (until !== undefined) {
        if (until > now) continue;
        this.down.delete(r.id);
      }
      out.push(r);
    }
    return out;
  }

  /** The affine replica for `affinity` among `candidates` (not in `tried`), or the least loaded if it is saturated. */
  pick(candidates: readonly Replica[], affinity: number, tried: ReadonlySet<string> | null): Replica | null {
    let best: Replica | null = null;
    let bestScore = -1;
    let least: Replica | null = null;
    let leastLoad = Infinity;
    for (const r of candidates) {
      if (tried !== null && tried.has(r.id)) continue;
      let h = this.idHashes.get(r.id);
      if (h === undefined) this.idHashes.set(r.id, (h = fnv1a(r.id)));
      const score = mix(affinity, h);
      if (score > bestScore) {
        bestScore = score;
        best = r;
      }
      const load = this.inFlight.get(r.id) ?? 0;
      if (load < leastLoad) {
        leastLoad = load;
        least = r;
      }
    }
    if (best !== null && (this.inFlight.get(best.id) ?? 0) >= this.maxInFlight) return least;
    return best;
  }

  markDown(id: string, now: number): void {
    this.down.set(id, now + this.downSeconds);
  }

  /** Adds to a replica's load; returns the new in-flight count and queued tokens. */
  add(id: string, requests: number, tokens: number): [number, number] {
    const f = (this.inFlight.get(id) ?? 0) + requests;
    const q = (this.queued.get(id) ?? 0) + tokens;
    this.inFlight.set(id, f);
    this.queued.set(id, q);
    return [f, q];
  }
}
