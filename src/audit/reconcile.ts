// Every stored job has its `job.submitted` event, even when the server died between the two
// commits (the store's, then the audit log's). The jobs route and the deployments controller log
// the event after the store committed the job; a kill -9 in between left jobs the log never
// mentions (68 of 335 in one PostgreSQL run). Two ways back, both logging the event once:
//
// - ensureSubmitted(): the client's keyed retry gets the stored jobs back (outcome `replayed`)
//   without a new commit; the route then logs whatever of them is missing.
// - reconcileSubmissions(): at server start, before the API listens and before the scheduling
//   loop or the deployments controller can submit, every job without the event gets one.
//
// A late event says so (`loggedLate`, and the job's own `submittedAt`): its `at` is when it was
// logged, and a reader of the log must not take that for the time of the submission.
import { sql, type Kysely } from 'kysely';
import { isoOfMs } from './event.js';
import type { AuditLog } from './log.js';

/**
 * What the event says of a job: the fields of the store's StoredJob it reads (named here, as the
 * audit layer sees no store; a StoredJob is one).
 */
export interface SubmittedJob {
  readonly id: string;
  readonly name: string;
  readonly member: string;
  readonly project: string;
  readonly user: string;
  readonly gpus: number;
  /** Seconds since the epoch. */
  readonly submittedAt: number;
  readonly request: { readonly priorityClass: string };
}

/** The store, as the reconciliation needs it: its database (tables `jobs` and `deployment_replicas`) and a job by id. */
export interface JobSource {
  // The store's Database type lives in the store layer; the anti-join below is plain SQL.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly db: Kysely<any>;
  job(id: string): Promise<SubmittedJob | undefined>;
}

/** The kind every job's first event has. */
export const SUBMITTED = 'job.submitted';

/** Why a `job.submitted` came after its job's commit instead of right after it. */
export type LateReason = 'keyed-retry' | 'server-start';

/** The event's data, as the jobs route writes it, plus why and when (the job's submission) it is late. */
function submittedData(job: SubmittedJob, late: LateReason, deployment: string | null): Record<string, unknown> {
  return {
    name: job.name,
    project: job.project,
    gpus: job.gpus,
    priorityClass: job.request.priorityClass,
    ...(deployment !== null ? { deployment } : {}),
    loggedLate: late,
    submittedAt: isoOfMs(Math.round(job.submittedAt * 1000)),
  };
}

/**
 * For the jobs a keyed retry got back: logs `job.submitted` for each that has none (committed,
 * then the server died, or the audit append failed, before the first reply). Concurrent retries
 * of the same key log it once (AuditLog.appendOnce). Resolves with the events' seqs, in order.
 */
export function ensureSubmitted(audit: AuditLog, jobs: readonly SubmittedJob[], actor: string): Promise<number[]> {
  return Promise.all(
    jobs.map((job) =>
      audit.appendOnce({
        kind: SUBMITTED,
        actor,
        member: job.member,
        subject: job.id,
        data: submittedData(job, 'keyed-retry', null),
      }),
    ),
  );
}

const PAGE = 1000;

/** Job ids (ascending, after `after`) that have no `job.submitted`, with the deployment a replica job belongs to. */
async function missing(store: JobSource, after: number): Promise<{ id: number; deployment: string | null }[]> {
  // The jobs table's id is an integer, the log's subject text: the cast lets the (subject, kind)
  // index of 009_audit_salts answer each probe.
  const r = await sql<{ id: string | number; deployment: string | null }>`
    select j.id as id, r.deployment as deployment
    from jobs j left join deployment_replicas r on r.job_id = cast(j.id as text)
    where j.id > ${after}
      and not exists (select 1 from audit_events a where a.subject = cast(j.id as text) and a.kind = ${SUBMITTED})
    order by j.id
    limit ${PAGE}`.execute(store.db);
  return r.rows.map((row) => ({ id: Number(row.id), deployment: row.deployment }));
}

/**
 * Logs `job.submitted` for every stored job that has none. Run at start, before anything else can
 * submit (the route, the deployments controller): then a job missing its event can only be one
 * whose submission was cut short. The actor is who submitted it: the job's user, or `deployments`
 * for a replica the deployments controller made (known from its replica row; a replica whose row
 * was lost in the same crash is logged as its deployment's creator's, who is the job's user).
 * Resolves with the ids of the jobs it logged.
 */
export async function reconcileSubmissions(audit: AuditLog, store: JobSource): Promise<string[]> {
  const logged: string[] = [];
  for (let after = -1; ;) {
    const page = await missing(store, after);
    for (const { id, deployment } of page) {
      const job = await store.job(String(id));
      // Deleted between the two reads: nothing to log.
      if (!job) continue;
      await audit.appendOnce({
        kind: SUBMITTED,
        actor: deployment !== null ? 'deployments' : job.user,
        member: job.member,
        subject: job.id,
        data: submittedData(job, 'server-start', deployment),
      });
      logged.push(job.id);
    }
    if (page.length < PAGE) return logged;
    after = page[page.length - 1].id;
  }
}
