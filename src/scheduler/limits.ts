// What a member may ever hold, whatever the others do: the consortium's hard limits. A job
// larger than that can never start, however long it waits; the server refuses it at submission
// and the cycle explains it as such, instead of promising it a start time.
import type { Member } from '../core/consortium.js';
import type { Site } from '../core/site.js';

/** The most GPUs a member can ever hold: its entitlement plus borrowing limit, and its zone. */
export function mostGpus(m: Member, site: Site): number {
  let most = m.borrowingLimitGpus === null ? Infinity : m.entitlementGpus + m.borrowingLimitGpus;
  if (m.zone !== null) {
    let zone = 0;
    for (const d of site.domains) if (d.zone === m.zone) zone += d.gpus;
    most = Math.min(most, zone);
  }
  return most;
}

/**
 * Why a job of `gpus` GPUs can never run for this member, in words; null when its limits allow
 * it. Only the member's limits are judged here: whether the machine has the nodes is the
 * placement's question (NodesUnavailable), which changes as nodes come and go.
 */
export function beyondMemberLimits(m: Member, site: Site, gpus: number): string | null {
  const most = mostGpus(m, site);
  if (gpus <= most) return null;
  const parts = [`entitlement ${round(m.entitlementGpus)}`];
  if (m.borrowingLimitGpus !== null) parts.push(`borrowing limit ${round(m.borrowingLimitGpus)}`);
  if (m.zone !== null) parts.push(`zone ${m.zone}`);
  return `the job asks for ${gpus} GPUs, but member ${m.id} may never hold more than ${round(most)} (${parts.join(', ')})`;
}

function round(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(1);
}
