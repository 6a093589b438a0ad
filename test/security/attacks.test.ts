// The attack suite on the local executor, on both stores: a member's researcher runs, as jobs and
// requests, every attack that broke earlier versions (issue 17), against a real `fabrik up` whose
// own environment holds a secret, while another member's job and model replica run beside it.
// Every attack must be refused, and nothing of the server or of the victim may reach the attacker.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../../src/api/contract.js';
import { forEachEngine } from '../audit/engines.js';
import { operatorToken, type SpawnedServer } from '../server/spawned.js';
import { startTarget, type ApiClient, type Target } from './client.js';
import {
  attackerScript,
  expectAttackerGotNothing,
  expectNoneOf,
  plant,
  serverSecrets,
  victimJob,
  type Planted,
} from './attack-kit.js';

const BIN = new URL('../../bin/fabrik', import.meta.url).pathname;

forEachEngine('attack suite, local executor', (engine, location) => {
  describe(`attacks through jobs and requests (local executor, ${engine})`, () => {
    let target: Target;
    let dir: string;
    let s: SpawnedServer;
    let api: ApiClient;
    let pia: string; // pharma researcher: the victim
    let tom: string; // telecom researcher: the attacker
    let planted: Planted;
    let victim: JobView;
    const serverSecret = `server-secret-${randomBytes(12).toString('hex')}`;

    beforeAll(async () => {
      // The server's own environment holds a secret, as FABRIK_STORE's password would.
      target = await startTarget(engine, await location(), { env: { FABRIK_ATTACK_SERVER_SECRET: serverSecret } });
      ({ dir, server: s, api } = target);
      pia = target.people.pharma.pia;
      tom = target.people.telecom.tom;
      planted = plant();
      victim = await api.startRunning(pia, victimJob(planted));
    }, 120_000);
    afterAll(async () => {
      await target?.close();
    }, 120_000);

    it('keeps the data folder 0700 and the store and the secrets in it 0600', () => {
      const data = join(dir, 'data');
      expect(statSync(data).mode & 0o777).toBe(0o700);
      for (const f of ['operator-token', ...(engine === 'sqlite' ? ['fabrik.db'] : [])])
        expect(statSync(join(data, f)).mode & 0o077, f).toBe(0);
    });

    it("gives an attacker's job nothing of the server, the store or the victim, and lets it stop nothing", async () => {
      const data = join(dir, 'data');
      const operatorBefore = operatorToken(data);
      const apiPort = Number(new URL(s.url).port);
      const { job, log, err } = await api.runToEnd(tom, {
        name: 'attacker',
        script: attackerScript({
          dataDir: data,
          victimJobId: victim.id,
          ports: { postgres: 5432, api: apiPort },
          victimFolders: [join(data, 'jobs', victim.id)],
        }),
      });
      expectAttackerGotNothing({
        log,
        err,
        jobId: job.id,
        dataDir: data,
        engine,
        operatorBefore,
        secrets: [serverSecret, planted.victimSecret, planted.victimEnv, planted.victimOutput],
      });
      expect(log + err).not.toMatch(/CONNECTED (postgres|api)/);
      // The victim still runs: the attacker could signal nothing of it.
      const v = await api.call<JobView>(pia, 'GET', `/v1/jobs/${victim.id}`);
      expect(v.body.state).toBe('running');
      // And the store is whole: the operator token still works.
      expect((await api.call(operatorToken(data), 'GET', '/v1/nodes')).status).toBe(200);
    }, 120_000);

    it('finds the secrets when the same probes run unconfined on this host (the attack above can fail)', () => {
      const data = join(dir, 'data');
      const out = execFileSync(
        'bash',
        [
          '-c',
          attackerScript(
            {
              dataDir: data,
              victimJobId: victim.id,
              ports: {},
              victimFolders: [join(data, 'jobs', victim.id)],
            },
            { harmful: false },
          ),
        ],
        { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 },
      );
      expect(out).toContain(operatorToken(data));
      expect(out).toContain(serverSecret);
      expect(out).toContain(planted.victimOutput);
    });

    it("shows a job only the code of Fabrik's installation, not what an operator keeps beside it", async () => {
      const repo = new URL('../../', import.meta.url).pathname;
      const { log, err } = await api.runToEnd(tom, { name: 'install', script: `#!/bin/bash\nls -A ${repo}\necho listed\n` });
      expect(log, err).toContain('listed');
      // Its own view: bin, src, node_modules, data/corpus, package.json, tsconfig.json; no README, no fabrik.yaml, no .fabrik.
      const seen = log.split('\n').filter((l) => l !== '' && l !== 'listed');
      expect(seen.sort()).toEqual(['bin', 'data', 'node_modules', 'package.json', 'src', 'tsconfig.json']);
    });

    it("mounts no dataset whose registrant could not read it: not the data folder, not another member's job folder", async () => {
      const data = join(dir, 'data');
      for (const [id, location] of [
        ['the-server', data],
        ['their-job', join(data, 'jobs', victim.id)],
      ]) {
        const reg = await api.call(tom, 'POST', '/v1/datasets', { id, classification: 'internal', zones: ['general'], location });
        expect(reg.status, JSON.stringify(reg.body)).toBe(201);
        const { job, log, err } = await api.runToEnd(tom, {
          name: 'via-dataset',
          datasets: [id],
          purpose: 'research',
          script: `#!/bin/bash\nfor f in "${location}"/* "${location}"/*/*; do [ -f "$f" ] && head -c 4096 "$f"; done; echo read done\n`,
        });
        expect(log + err, id).toContain('read done');
        expectNoneOf(log + err, [planted.victimOutput, ...serverSecrets(data)], `job ${job.id} through dataset ${id}`);
        expect(log + err, id).toMatch(/cannot read .*; it is not mounted/);
      }
    });

    it("never serves a file outside the job's folder through the log API", async () => {
      for (const output of ['/proc/self/environ', join(dir, 'data', 'operator-token'), '../../operator-token', '/etc/shadow']) {
        const r = await api.call<{ error: { code: string; field: string } }>(tom, 'POST', '/v1/jobs', {
          name: 'exfil',
          command: ['true'],
          output,
        });
        expect(r.status, output).toBe(400);
        expect(r.body.error.field).toBe('body.output');
      }
      // Links planted by the job in its own folder are not followed, hard or symbolic.
      const data = join(dir, 'data');
      const { job } = await api.runToEnd(tom, {
        name: 'links',
        script: `#!/bin/bash\nln -s ${join(data, 'operator-token')} sym.log\nln ${join(data, 'operator-token')} hard.log 2>/dev/null\nln -s /proc/1/environ env.log\ntrue\n`,
      });
      for (const name of ['sym.log', 'hard.log', 'env.log']) {
        const again = await api.call<{ jobs: JobView[] }>(tom, 'POST', '/v1/jobs', {
          name: 'reader',
          command: ['true'],
          workdir: '.',
          output: name,
        });
        // Either refused, or it writes a fresh file of its own: never the link's target.
        if (again.status === 201) {
          const id = again.body.jobs[0].id;
          await api.waitEnded(tom, id);
          const got = await api.call<string>(tom, 'GET', `/v1/jobs/${id}/logs`);
          expectNoneOf(String(got.body), serverSecrets(data), `log ${name} of job ${id}`);
        }
      }
      expect(job.state).toBe('succeeded');
    }, 120_000);

    it("keeps the CLI's own token out of jobs and refuses Fabrik credentials in a job's environment", async () => {
      const r = await api.call<{ error: { code: string; field: string } }>(tom, 'POST', '/v1/jobs', {
        name: 'carry',
        command: ['true'],
        env: { FABRIK_TOKEN: tom },
      });
      expect(r.status).toBe(400);
      expect(r.body.error.field).toMatch(/^body\.env/);
      const { log } = await api.cli(tom, ['submit', '--wrap', 'env', '--export', 'ALL'], {
        FABRIK_TOKEN: tom,
        OTHER_VAR: 'fine',
      });
      expect(log).toContain('OTHER_VAR=fine');
      expect(log).not.toContain(tom);
    }, 120_000);

    it("shows no one the victim's secrets: not the operator, not its member's other people, not by cancel or events", async () => {
      const operator = operatorToken(join(dir, 'data'));
      for (const [who, token] of [
        ['operator', operator],
        ['owner', pia],
      ] as const) {
        const text = JSON.stringify((await api.call(token, 'GET', `/v1/jobs/${victim.id}`)).body);
        expectNoneOf(text, [planted.victimSecret], `GET job as ${who}`);
      }
      const op = JSON.stringify((await api.call(operator, 'GET', `/v1/jobs/${victim.id}`)).body);
      expectNoneOf(op, [planted.victimEnv], 'GET job as the operator');
      const ev = JSON.stringify((await api.call(operator, 'GET', `/v1/jobs/${victim.id}/events`)).body);
      expectNoneOf(ev, [planted.victimSecret, planted.victimEnv], 'events as the operator');
      // The store's file holds the secret only encrypted.
      if (engine === 'sqlite')
        expectNoneOf(readFileSync(join(dir, 'data', 'fabrik.db'), 'latin1'), [planted.victimSecret], 'the store');
      const audit = JSON.stringify((await api.call(operator, 'GET', '/v1/audit/events?limit=1000')).body);
      expectNoneOf(audit, [planted.victimSecret, planted.victimEnv], 'the audit log');
    });

    it("does not let the attacker reach the victim's model replica", async () => {
      const dep = await api.call<{ id: string }>(pia, 'POST', '/v1/deployments', {
        model: 'victim-model',
        min: 1,
        max: 1,
        command: [BIN, 'engine', '--model', 'victim-model'],
      });
      expect(dep.status, JSON.stringify(dep.body)).toBe(201);
      const replicaJob = await api.waitFor('the replica to run', async () => {
        const jobs = (await api.call<{ jobs: JobView[] }>(pia, 'GET', `/v1/jobs?name=deploy-${dep.body.id}-r0`)).body.jobs;
        return jobs[0]?.state === 'running' ? jobs[0] : undefined;
      });
      const port = Number(replicaJob.spec.env.FABRIK_ENGINE_PORT);
      expect(port).toBeGreaterThan(0);
      const { log, err } = await api.runToEnd(tom, {
        name: 'replica-probe',
        script: `#!/bin/bash\nfor i in 1 2 3; do if (exec 3<>/dev/tcp/127.0.0.1/${port}) 2>/dev/null; then echo CONNECTED; fi; sleep 0.2; done\necho probe done\n`,
      });
      expect(log, err).toContain('probe done');
      expect(log).not.toContain('CONNECTED');
      // While the gateway, for pharma's own key, does reach it.
      const key = await api.call<{ secret: string }>(pia, 'POST', '/v1/keys', {
        name: 'victim-app',
        models: ['victim-model'],
        classification: 'public',
      });
      expect(key.status, JSON.stringify(key.body)).toBe(201);
      const answer = await api.waitFor('the replica to answer through the gateway', async () => {
        const res = await fetch(`${api.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key.body.secret}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'victim-model', messages: [{ role: 'user', content: 'hello' }], max_tokens: 4 }),
        });
        return res.status === 200 ? ((await res.json()) as { choices: unknown[] }) : undefined;
      });
      expect(answer.choices.length).toBe(1);
      await api.call(pia, 'DELETE', `/v1/deployments/${dep.body.id}`);
    }, 120_000);
  });
});
