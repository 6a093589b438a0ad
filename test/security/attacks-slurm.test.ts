// The attack suite on the Slurm executor (scripts/slurm/up.sh), on both stores: the attacker's job
// runs on a real Slurm node as telecom's Unix user, beside pharma's job, and tries what it tried on
// the local executor, plus Slurm's own windows onto other members' work (squeue, scontrol, sacct).
// Fabrik does not run the processes here: what holds is the member's own Unix user, the data
// folder's modes, Slurm's PrivateData, and the API's refusals (docs/security.md says what the site
// must add, such as a store the nodes cannot reach without a password).
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { forEachEngine } from '../audit/engines.js';
import { slurmReachable } from '../slurm-cluster.js';
import { startTarget, type ApiClient, type Target } from './client.js';
import { attackerScript, expectAttackerGotNothing, expectNoneOf, plant, victimJob, type Planted } from './attack-kit.js';

const reachable = await slurmReachable('the attack suite on Slurm');
const BIN = new URL('../../bin/fabrik', import.meta.url).pathname;

forEachEngine('attack suite, Slurm executor', (engine, location) => {
  describe.runIf(reachable)(`attacks through jobs (Slurm executor, ${engine})`, () => {
    let target: Target;
    let data: string;
    let api: ApiClient;
    let pia: string;
    let tom: string;
    let planted: Planted;
    let victim: JobView;
    const serverSecret = `server-secret-${randomBytes(12).toString('hex')}`;

    beforeAll(async () => {
      // The members' users pass through to their own job folders (the data folder itself is 0711).
      target = await startTarget(engine, await location(), {
        flags: ['--executor', 'slurm', '--slurm-create-users'],
        env: { FABRIK_ATTACK_SERVER_SECRET: serverSecret },
        folderMode: 0o711,
      });
      ({ data, api } = target);
      pia = target.people.pharma.pia;
      tom = target.people.telecom.tom;
      planted = plant();
      victim = await api.startRunning(pia, victimJob(planted));
    }, 120_000);
    afterAll(async () => {
      if (victim) await api.call(pia, 'POST', `/v1/jobs/${victim.id}/cancel`).catch(() => undefined);
      await target?.close();
    }, 120_000);

    it("gives the attacker's Slurm job nothing of the server, the store or the victim, and lets it stop nothing", async () => {
      const operatorBefore = target.operator;
      const script = attackerScript({
        dataDir: data,
        victimJobId: victim.id,
        ports: {},
        victimFolders: [join(data, 'jobs', victim.id)],
      }).replace(
        'echo "attack done"',
        [
          "# Slurm itself: other members' jobs, users, accounts and usage.",
          'echo "== squeue"; squeue -a -h -o "%i|%u|%a|%j|%k" 2>&1',
          'echo "== scontrol"; scontrol show jobs 2>&1 | head -c 65536',
          'echo "== sacct"; sacct -a -X -n -P -o jobid,user,account,jobname -S 2020-01-01 2>&1 | head -c 65536',
          'echo "== sshare"; sshare -a -h 2>&1 | head -c 65536',
          // Every job it can see but its own: cancelling itself raced its last line to the log.
          'echo "== scancel"; squeue -a -h -o "%i" 2>/dev/null | grep -vx "${SLURM_JOB_ID:-}" | xargs -r scancel 2>&1',
          'echo "attack done"',
        ].join('\n'),
      );
      const { job, log, err } = await api.runToEnd(tom, { name: 'attacker', script }, 120_000);
      expectAttackerGotNothing({
        log,
        err,
        jobId: job.id,
        dataDir: data,
        engine,
        operatorBefore,
        secrets: [serverSecret, planted.victimSecret, planted.victimEnv, planted.victimOutput],
      });
      // Slurm shows it nothing of pharma's.
      expect(log + err).not.toContain('pharma');
      const v = await api.call<JobView>(pia, 'GET', `/v1/jobs/${victim.id}`);
      expect(v.body.state).toBe('running');
    }, 180_000);

    it('gives the victim its secret and shows it to no one through the API', async () => {
      const { log } = await api.runToEnd(
        pia,
        { name: 'own-secret', script: '#!/bin/bash\necho "mine=$MINE"\n', secretEnv: { MINE: planted.victimSecret } },
        120_000,
      );
      expect(log).toContain(`mine=${planted.victimSecret}`);
      const operator = target.operator;
      for (const token of [operator, pia, tom]) {
        const text = JSON.stringify((await api.call(token, 'GET', '/v1/jobs?limit=1000')).body);
        expectNoneOf(text, [planted.victimSecret], 'the job list');
      }
    }, 180_000);

    it("answers the attacker's job with 401 on the victim's model replica, while the gateway reaches it", async () => {
      const dep = await api.call<{ id: string }>(pia, 'POST', '/v1/deployments', {
        model: 'victim-model',
        min: 1,
        max: 1,
        command: [BIN, 'engine', '--model', 'victim-model', '--ttft-ms', '0', '--itl-ms', '0'],
      });
      expect(dep.status, JSON.stringify(dep.body)).toBe(201);
      // A new Unix user's first start compiles the CLI: give it time.
      const replica = await api.waitFor(
        'a healthy replica on Slurm',
        async () => {
          const d = await api.call<{ replicas: { url: string | null; healthy: boolean }[] }>(
            pia,
            'GET',
            `/v1/deployments/${dep.body.id}`,
          );
          return d.body.replicas.find((r) => r.healthy && r.url !== null);
        },
        120_000,
      );
      // On Slurm the engine listens on its node's address: the attacker's job is given it, as a scan would find it.
      const url = replica.url!;
      const curl = `curl -sS -m 5 -w '\\nSTATUS=%{http_code}\\n'`;
      const { log, err } = await api.runToEnd(
        tom,
        {
          name: 'replica-probe',
          script: [
            '#!/bin/bash',
            `echo "== health"; ${curl} ${url}/health 2>&1`,
            `echo "== models"; ${curl} -H 'authorization: Bearer guessed' ${url}/v1/models 2>&1`,
            `echo "== chat"; ${curl} -H 'content-type: application/json' -d '{"model":"victim-model","messages":[{"role":"user","content":"hello"}],"max_tokens":4}' ${url}/v1/chat/completions 2>&1`,
            // Nor can it read the replica's token from a process it can see.
            'for f in /proc/[0-9]*/environ; do grep -aq -e FABRIK_ENGINE_API_KEY= -e VLLM_API_KEY= "$f" 2>/dev/null && echo "FOUND $f"; done',
            'echo "probe done"',
          ].join('\n'),
        },
        120_000,
      );
      expect(log, err).toContain('probe done');
      // It reached the port (the site's network lets it), and the engine refused it every time.
      expect(log.match(/STATUS=401/g), log).toHaveLength(3);
      expect(log).toContain('invalid_api_key');
      expect(log).not.toContain('"choices"');
      expect(log).not.toContain('FOUND');
      // While the gateway, for pharma's own key, is served by it.
      const admin = target.people.pharma.admin;
      const key = await api.call<{ secret: string }>(admin, 'POST', '/v1/keys', {
        name: 'victim-app',
        models: ['victim-model'],
        classification: 'public',
      });
      expect(key.status, JSON.stringify(key.body)).toBe(201);
      const res = await fetch(`${api.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.body.secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'victim-model', messages: [{ role: 'user', content: 'hello' }], max_tokens: 4 }),
      });
      expect(res.status, await res.clone().text()).toBe(200);
      expect(((await res.json()) as { choices: unknown[] }).choices).toHaveLength(1);
      await api.call(pia, 'DELETE', `/v1/deployments/${dep.body.id}`);
    }, 300_000);

    it('refuses log paths outside the job folder on Slurm too', async () => {
      const r = await api.call<{ error: { field: string } }>(tom, 'POST', '/v1/jobs', {
        command: ['true'],
        output: '/proc/self/environ',
      });
      expect(r.status).toBe(400);
      expect(r.body.error.field).toBe('body.output');
    });
  });
});
