// `fabrik reservations create|list|delete`: advance reservations (capability runs) over the API,
// as Slurm's `scontrol create reservation`, `sinfo -T` and `scontrol delete reservation`.
// Tables for people, --json for scripts.
import { Command, InvalidArgumentError } from 'commander';
import type { ReservationView } from '../api/contract.js';
import { client, json } from './output.js';
import { line } from './printable.js';
import { InvalidSlurmTimeError, parseSlurmTime } from './slurm-time.js';
import { table } from './table.js';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, min: 60, h: 3600, d: 86_400, w: 7 * 86_400 };

/**
 * A duration: `24h`, `90m`, `3d`, `1w`, `45s`, or several (`3d12h`), or Slurm's time forms
 * (`1-00:00:00`, `90` minutes). Seconds; throws InvalidArgumentError naming what it expects.
 */
export function parseDuration(text: string): number {
  const t = text.trim();
  if (/^(\d+(?:\.\d+)?(?:s|min|m|h|d|w))+$/.test(t)) {
    let seconds = 0;
    for (const m of t.matchAll(/(\d+(?:\.\d+)?)(s|min|m|h|d|w)/g)) seconds += Number(m[1]) * UNIT_SECONDS[m[2]];
    if (seconds > 0) return Math.round(seconds);
  }
  try {
    const s = parseSlurmTime(t);
    if (Number.isFinite(s) && s > 0) return s;
  } catch (e) {
    if (!(e instanceof InvalidSlurmTimeError)) throw e;
  }
  throw new InvalidArgumentError(`'${text}' is not a duration: give 24h, 90m, 3d12h, 1w, or Slurm's days-hh:mm:ss`);
}

/**
 * A start time: `now`, `now+3d` (Slurm's `now+…`, any unit of parseDuration), or an ISO 8601 time
 * with its zone (`2026-12-10T08:00Z`; one without a zone is refused: whose 08:00?). Seconds since the epoch.
 */
export function parseStart(text: string, now: number): number {
  const t = text.trim();
  if (t === 'now') return now;
  const rel = /^now\+(.+)$/.exec(t);
  if (rel) return now + parseDuration(rel[1]);
  if (/^\d{4}-\d{2}-\d{2}T/.test(t) && /(Z|[+-]\d{2}:?\d{2})$/.test(t)) {
    const ms = Date.parse(t);
    if (!Number.isNaN(ms)) return ms / 1000;
  }
  throw new InvalidArgumentError(`'${text}' is not a start: give now, now+3d, or an ISO time with its zone (2026-12-10T08:00Z)`);
}

function gpuCount(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1)
    throw new InvalidArgumentError(`--gpus must be a whole number of at least 1, got '${v}'.`);
  return Number(v);
}

const when = (iso: string) => iso.replace(/:\d{2}\.\d{3}Z$/, 'Z');

export function reservationsCommand(): Command {
  const reservations = new Command('reservations').description(
    'advance reservations (capability runs): GPUs booked for a member from a start time',
  );
  reservations
    .command('create')
    .description(
      "book GPUs for a member (scontrol create reservation); operators name the member, member admins book their own within the consortium's rules",
    )
    .requiredOption('--gpus <n>', 'GPUs to hold: whole nodes', gpuCount)
    .requiredOption('--start <time>', 'now, now+3d, or an ISO time with its zone (2026-12-10T08:00Z)', (v) =>
      parseStart(v, Date.now() / 1000),
    )
    .requiredOption('--duration <time>', 'how long: 24h, 90m, 3d, or days-hh:mm:ss', parseDuration)
    .option('--member <id>', "whose it is (operators; a member admin's is its own member)")
    .option('--name <name>', 'its name, unique in the factory (default: <member>-<start>)')
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const start: number = o.start;
      const name: string =
        o.name ?? `${o.member ?? 'cap'}-${new Date(start * 1000).toISOString().slice(0, 16).replace(/[-:T]/g, '')}`;
      const r = await client().request<{ reservation: ReservationView }>('POST', '/v1/reservations', {
        name,
        ...(o.member ? { member: o.member } : {}),
        gpus: o.gpus,
        start: new Date(start * 1000).toISOString(),
        durationSeconds: o.duration,
      });
      if (o.json) return json(r.reservation);
      const v = r.reservation;
      console.log(
        line`reservation ${v.name}: ${v.gpus} GPUs for ${v.member} from ${when(v.start)} to ${when(v.end)} on ${v.nodes.length} node(s); submit with --reservation=${v.name}`,
      );
    });
  reservations
    .command('list', { isDefault: true })
    .description('every reservation that is on or to come (sinfo -T)')
    .option('--json', 'JSON for scripts')
    .action(async (o) => {
      const r = await client().request<{ reservations: ReservationView[] }>('GET', '/v1/reservations');
      if (o.json) return json(r.reservations);
      if (r.reservations.length === 0) return console.log('no reservations');
      console.log(
        table(
          ['RESV_NAME', 'MEMBER', 'STATE', 'START_TIME', 'END_TIME', 'GPUS', 'NODES', 'BOOKED_BY'],
          r.reservations.map((v) => [
            v.name,
            v.member,
            v.state.toUpperCase(),
            when(v.start),
            when(v.end),
            String(v.gpus),
            nodeList(v.nodes),
            v.createdBy ?? '-',
          ]),
        ).join('\n'),
      );
    });
  reservations
    .command('delete')
    .argument('<name>')
    .description("delete a reservation (scontrol delete reservation): its GPUs are everyone's again")
    .option('--json', 'JSON for scripts')
    .action(async (name: string, o) => {
      const r = await client().request<{ reservation: ReservationView }>(
        'DELETE',
        `/v1/reservations/${encodeURIComponent(name)}`,
      );
      if (o.json) return json(r.reservation);
      console.log(line`reservation ${r.reservation.name} deleted: its ${r.reservation.gpus} GPUs are everyone's again`);
    });
  return reservations;
}

/** A few names, then a count: a 576-GPU reservation holds 144 nodes. */
function nodeList(nodes: readonly string[]): string {
  return nodes.length <= 3 ? nodes.join(',') : `${nodes.slice(0, 2).join(',')},… (${nodes.length})`;
}
