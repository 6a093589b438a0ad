// /v1/deployments: a member's model endpoints. Create, list (with each replica's job, state, URL,
// health and load), show, scale (min, max, scale to zero) and delete. Another member's deployment
// does not exist for you (404). Who may do what: deployment.create, .scale, .delete and .read in
// src/server/access.ts. Creating and scaling are the member's people's: an operator deploying code as
// pharma would serve pharma's models under pharma's name. Deleting stops the replicas, an
// operational act like cancelling a job, which an operator keeps.
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isoTime } from '../../api/contract.js';
import type { Principal } from '../../server/auth.js';
import type { ServerContext } from '../../server/context.js';
import { authorize, memberOfWork, requireRole } from '../../server/access.js';
import { ApiError, notFound } from '../../server/errors.js';
import { CreateDeployment, DeploymentView, ScaleDeployment } from './api.js';
import { DeploymentConflictError, type DeploymentController } from './controller.js';
import { deploymentMetrics } from './metrics.js';
import type { Deployment } from './store.js';

const DeploymentId = z.object({ id: z.string().regex(/^[a-z0-9]{1,32}$/, 'a deployment id') });

function view(d: Deployment, c: DeploymentController): DeploymentView {
  const replicas = d.state === 'active' ? c.replicaStatus(d.id) : [];
  return {
    id: d.id,
    member: d.member,
    project: d.project,
    model: d.model,
    command: [...d.command],
    gpus: d.gpus,
    min: d.min,
    max: d.max,
    target: d.target,
    ready: replicas.filter((r) => r.healthy).length,
    accreditations: [...d.accreditations],
    zone: d.zone,
    reasoning: d.reasoning,
    scaleToZeroSeconds: d.scaleToZeroSeconds,
    state: d.state,
    createdAt: isoTime(d.createdAt),
    createdBy: d.createdBy,
    updatedAt: isoTime(d.updatedAt),
    replicas,
  };
}

const bad = (field: string, message: string) => new ApiError(400, 'VALIDATION_FAILED', message, field);

export function deploymentRoutes(app: FastifyInstance, ctx: ServerContext & { deployments: DeploymentController }): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const c = ctx.deployments;
  deploymentMetrics(ctx.metrics.registry, c);

  /** The deployment if the principal may do `action` on it: 404 when it is another member's, 403 for the role. */
  async function visible(
    p: Principal,
    id: string,
    action: 'deployment.read' | 'deployment.scale' | 'deployment.delete',
  ): Promise<Deployment> {
    const d = await c.get(id);
    if (!d) throw notFound(`deployment ${id}`);
    authorize(p, action, { member: d.member, what: `deployment ${id}` });
    return d;
  }

  r.post(
    '/v1/deployments',
    {
      schema: {
        summary: 'Deploy a model endpoint: replicas are inference-class jobs running the engine command on $FABRIK_ENGINE_PORT.',
        body: CreateDeployment,
        response: { 201: DeploymentView },
      },
    },
    async (req, reply) => {
      const p = req.principal;
      const b = req.body;
      const id = memberOfWork(p, 'deployment.create', { value: b.member, field: 'body.member' });
      const member = ctx.consortium.members.find((m) => m.id === id);
      if (!member) throw bad('body.member', `no member ${id}`);
      const project = b.project ?? member.projects[0] ?? 'default';
      if (member.projects.length > 0 && !member.projects.includes(project))
        throw bad('body.project', `member ${member.id} has no project ${project} (it has ${member.projects.join(', ')})`);
      // The same zone rules as a job's (see buildJobs in routes/jobs.ts): a replica is a job.
      const site = ctx.controller.currentSite();
      if (b.zone !== null && !site.zones.includes(b.zone))
        throw bad('body.zone', `no zone ${b.zone} (zones: ${site.zones.join(', ')})`);
      if (b.zone !== null && member.zone !== null && b.zone !== member.zone)
        throw new ApiError(403, 'FORBIDDEN', `member ${member.id}'s work runs in zone ${member.zone} only`, 'body.zone');
      if (b.zone !== null && member.zone === null && ctx.consortium.members.some((m) => m.zone === b.zone))
        throw new ApiError(403, 'FORBIDDEN', `zone ${b.zone} is reserved for the members bound to it`, 'body.zone');
      if (member.zone !== null && !site.zones.includes(member.zone))
        throw new ApiError(
          409,
          'CONFLICT',
          `member ${member.id}'s work must run in zone ${member.zone}, which this site does not have`,
        );
      if (b.gpus > site.totalGpus) throw bad('body.gpus', `the site has ${site.totalGpus} GPUs; a replica asks for ${b.gpus}`);
      try {
        const d = await c.create({
          id: randomBytes(4).toString('hex'),
          member: member.id,
          project,
          model: b.model,
          command: b.command,
          gpus: b.gpus,
          min: b.min,
          max: b.max ?? b.min,
          accreditations: b.accreditations,
          zone: b.zone ?? member.zone,
          reasoning: b.reasoning,
          scaleToZeroSeconds: b.scaleToZeroSeconds,
          user: p.user,
        });
        return reply.code(201).send(view(d, c));
      } catch (err) {
        if (err instanceof DeploymentConflictError) throw new ApiError(409, 'CONFLICT', err.message, 'body.model');
        throw err;
      }
    },
  );

  r.get(
    '/v1/deployments',
    {
      schema: {
        summary: "Your member's active deployments (everyone's for operators), with their replicas.",
        response: { 200: z.object({ deployments: z.array(DeploymentView) }) },
      },
    },
    async (req) => {
      requireRole(req.principal, 'deployment.read');
      return { deployments: (await c.list(req.principal.member)).map((d) => view(d, c)) };
    },
  );

  r.get('/v1/deployments/:id', { schema: { params: DeploymentId, response: { 200: DeploymentView } } }, async (req) =>
    view(await visible(req.principal, req.params.id, 'deployment.read'), c),
  );

  r.patch(
    '/v1/deployments/:id',
    {
      schema: {
        summary: 'Change min, max or scale to zero; the replica count moves inside the new bounds at once.',
        params: DeploymentId,
        body: ScaleDeployment,
        response: { 200: DeploymentView },
      },
    },
    async (req) => {
      const p = req.principal;
      const d = await visible(p, req.params.id, 'deployment.scale');
      if (d.state !== 'active') throw new ApiError(409, 'CONFLICT', `deployment ${d.id} was deleted`);
      try {
        const after = await c.scale(d.id, req.body, p.user);
        if (!after) throw new ApiError(409, 'CONFLICT', `deployment ${d.id} was deleted`);
        return view(after, c);
      } catch (err) {
        if (err instanceof DeploymentConflictError) throw new ApiError(400, 'VALIDATION_FAILED', err.message, 'body.min');
        throw err;
      }
    },
  );

  r.delete(
    '/v1/deployments/:id',
    {
      schema: {
        summary: 'Delete a deployment: its replicas are stopped.',
        params: DeploymentId,
        response: { 200: DeploymentView },
      },
    },
    async (req) => {
      const p = req.principal;
      const d = await visible(p, req.params.id, 'deployment.delete');
      if (d.state !== 'active') throw new ApiError(409, 'CONFLICT', `deployment ${d.id} was already deleted`);
      const after = await c.delete(d.id, p.user);
      if (!after) throw new ApiError(409, 'CONFLICT', `deployment ${d.id} was already deleted`);
      return view(after, c);
    },
  );
}
