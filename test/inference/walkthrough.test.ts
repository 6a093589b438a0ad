// The README's "Serve a model behind the OpenAI API", as a new user follows it: pia deploys the
// bundled engine with `fabrik deploy`, watches it come up, creates a gateway key, calls it with
// curl and with the openai client, watches it scale out under real gateway traffic and back after
// the cool-down, reads his usage, changes the bounds, revokes the key, and deletes the deployment.
// Every fabrik command is the CLI itself, spawned from the repository root as a person types it.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import OpenAI, { AuthenticationError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testServer, type TestServer } from '../server/helpers.js';

const root = new URL('../../', import.meta.url).pathname;
const main = `${root}src/cli/main.ts`;
const README = readFileSync(`${root}README.md`, 'utf8');
const section = README.slice(README.indexOf('## Serve a model behind the OpenAI API'), README.indexOf('## Verify the audit log'));

/** The commands and bodies as the README has them (checked to be there, so the two stay the same). */
const DEPLOY = 'deploy --model bard --min 1 --max 2 --accredited internal -- bin/fabrik engine --model bard';
const CURL_BODY = '{"model":"bard","messages":[{"role":"user","content":"Shall I compare thee"}],"stream":true,"max_tokens":12}';
const NODE_SNIPPET =
  "import OpenAI from 'openai'; const r = await new OpenAI().chat.completions.create({model:'bard',messages:[{role:'user',content:'Hello'}],max_tokens:8}); console.log(r.choices[0].message.content, r.usage)";

interface Run {
  code: number | null;
  out: string;
  err: string;
}
interface ReplicaView {
  id: string;
  state: string;
  url: string | null;
  healthy: boolean;
  inFlight: number;
}
interface View {
  id: string;
  target: number;
  min: number;
  max: number;
  replicas: ReplicaView[];
}

let t: TestServer;
let pia: string;
let id = '';
let key = '';
let keyId = '';
/** Tokens the openai client and curl were told they used. */
const used = { prompt: 0, completion: 0 };

/** Commands still running (a step that failed may leave one): killed at the end. */
const running = new Set<ChildProcess>();

function proc(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env } });
    running.add(child);
    child.on('exit', () => running.delete(child));
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => resolve({ code, out, err }));
  });
}
/** `FABRIK_TOKEN=$PIA bin/fabrik …` */
const fabrik = (...args: string[]) =>
  proc(process.execPath, ['--import', 'tsx', main, ...args], { FABRIK_URL: t.server.url, FABRIK_TOKEN: pia });
const ok = (r: Run) => {
  expect(r.err, r.out).toBe('');
  expect(r.code).toBe(0);
  return r.out;
};
const get = async () => (await t.call<View>(pia, 'GET', `/v1/deployments/${id}`)).body;
const openai = () => new OpenAI({ baseURL: `${t.server.url}/v1`, apiKey: key, maxRetries: 0 });
/** Rows of a `fabrik deployments show` replica table: [job, replica, state, node, url, healthy, in flight, queued]. */
const replicaRows = (out: string) =>
  out
    .split('\n')
    .filter((l) => /^ {2}\d+\s+r\d+\s/.test(l))
    .map((l) => l.trim().split(/\s+/));

/** Processes whose environment names the deployment: its replicas' engines (and their wrappers). */
function replicaProcesses(deployment: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/environ`, 'utf8').split('\0').includes(`FABRIK_DEPLOYMENT=${deployment}`))
        pids.push(Number(p));
    } catch {
      /* gone, or not ours */
    }
  }
  return pids;
}

beforeAll(async () => {
  t = await testServer({
    // Two requests in flight per replica, a short cool-down, quick checks that a loaded machine's
    // slow answer does not fail.
    deployments: {
      targetInFlight: 2,
      scaleDownCooldownSeconds: 2,
      healthIntervalMs: 200,
      healthTimeoutMs: 3000,
      reconcileMs: 200,
    },
  });
  pia = await t.token('pharma', 'researcher', 'pia');
});
afterAll(async () => {
  // A failed step leaves the deployment: stop its replicas before the server goes.
  if (id && (await t.call(pia, 'DELETE', `/v1/deployments/${id}`)).status === 200)
    await t.waitFor('replicas stopped', async () => replicaProcesses(id).length === 0, 15_000).catch(() => undefined);
  for (const pid of id ? replicaProcesses(id) : [])
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* it ended meanwhile */
    }
  for (const child of running) child.kill('SIGKILL');
  await t?.close();
});

describe('README: serve a model behind the OpenAI API', () => {
  it('has the commands this test runs', () => {
    expect(section).toContain(`FABRIK_TOKEN=$PIA bin/fabrik ${DEPLOY}`);
    expect(section).toContain(`-d '${CURL_BODY}'`);
    expect(section).toContain(NODE_SNIPPET);
    for (const c of [
      'deployments ',
      'deployments show <id>',
      'keys create --name app --models bard',
      'usage ',
      'gateway limits ',
      'deployments scale <id> --max 3',
      'keys revoke <key>',
      'deployments delete <id>',
    ])
      expect(section).toContain(`FABRIK_TOKEN=$PIA bin/fabrik ${c}`);
  });

  it('deploys the bundled engine and shows its replica once healthy', async () => {
    const out = ok(await fabrik(...DEPLOY.split(' ')));
    const m = /^deployment (\w+): model bard, 1–2 replicas of 1 GPU\(s\); see `fabrik deployments show (\w+)`\n$/.exec(out);
    expect(m, out).not.toBeNull();
    id = m![1];
    expect(m![2]).toBe(id);
    await t.waitFor('a healthy replica', async () => (await get()).replicas.some((r) => r.healthy), 30_000);

    const [list, show] = await Promise.all([fabrik('deployments'), fabrik('deployments', 'show', id)]);
    expect(ok(list)).toMatch(/^ID\s+MODEL\s+MEMBER\s+READY\s+MIN\s+MAX/);
    expect(list.out).toMatch(new RegExp(`\\n${id}\\s+bard\\s+pharma\\s+1/1\\s+1\\s+2\\s+1\\s+internal\\s`));
    expect(ok(show)).toContain(`deployment ${id}: model bard (member pharma, project protein-folding) active`);
    expect(show.out).toContain(`command        ${root}bin/fabrik engine --model bard`);
    expect(show.out).toContain('replicas       1/1 ready; min 1, max 2; 1 GPU(s) each');
    expect(show.out).toMatch(/JOB\s+REPLICA\s+STATE\s+NODE\s+URL\s+HEALTHY\s+IN FLIGHT\s+QUEUED TOKENS/);
    const rows = replicaRows(show.out);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toEqual([
      expect.stringMatching(/^\d+$/),
      'r0',
      'running',
      expect.any(String),
      expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/),
      'yes',
      '0',
      '0',
    ]);
  }, 60_000);

  it('creates a key and calls the gateway with curl and the openai client', async () => {
    const created = ok(await fabrik('keys', 'create', '--name', 'app', '--models', 'bard'));
    // What a person reads: the key's id, and its secret on a line of its own.
    const m = /^key (\S+) created for pharma; its secret is shown only now:\n(fgk_\S+)\n$/.exec(created);
    expect(m, created).not.toBeNull();
    [, keyId, key] = m!;

    const curl = await proc('/usr/bin/curl', [
      '-sN',
      `${t.server.url}/v1/chat/completions`,
      '-H',
      `authorization: Bearer ${key}`,
      '-H',
      'content-type: application/json',
      '-d',
      CURL_BODY,
    ]);
    expect(curl.code, curl.err).toBe(0);
    const events = curl.out.split('\n\n').filter((e) => e.trim() !== '');
    expect(
      events.every((e) => e.startsWith('data: ')),
      curl.out,
    ).toBe(true);
    expect(events.at(-1)).toBe('data: [DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)));
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    expect(chunks[0]).toMatchObject({ object: 'chat.completion.chunk', model: 'bard' });
    expect(text.trim()).not.toBe('');
    expect(chunks.at(-1).choices[0].finish_reason).toBe('length');

    // The README's one-liner, in a shell of its own with the variables it sets.
    const node = await proc(process.execPath, ['--input-type=module', '-e', NODE_SNIPPET], {
      OPENAI_BASE_URL: `${t.server.url}/v1`,
      OPENAI_API_KEY: key,
    });
    expect(node.err).toBe('');
    expect(node.code).toBe(0);
    expect(node.out).toMatch(/prompt_tokens: 1,\s+completion_tokens: 8,\s+total_tokens: 9/);

    const client = openai();
    const r = await client.chat.completions.create({
      model: 'bard',
      messages: [{ role: 'user', content: 'We hold these truths' }],
      max_tokens: 10,
    });
    expect(r.choices[0].message.content?.trim()).not.toBe('');
    expect(r.usage).toMatchObject({ prompt_tokens: 4, completion_tokens: 10, total_tokens: 14 });
    let streamed = '';
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const c of await client.chat.completions.create({
      model: 'bard',
      messages: [{ role: 'user', content: 'Liberty' }],
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    })) {
      streamed += c.choices[0]?.delta.content ?? '';
      if (c.usage) usage = c.usage;
    }
    expect(streamed.trim()).not.toBe('');
    expect(usage).toMatchObject({ prompt_tokens: 1, completion_tokens: 6 });
    used.prompt += 4 + 1 + 4 + 1; // curl, the one-liner, the two calls above
    used.completion += 12 + 8 + 10 + 6;
  }, 60_000);

  it('scales out to 2 replicas under gateway traffic, both serving, and back to 1 after the cool-down', async () => {
    const client = openai();
    let stop = false;
    let sent = 0;
    const served = new Set<string>();
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const stream = await client.chat.completions.create({
          model: 'bard',
          // Different openings: the gateway's prefix affinity spreads them over the replicas.
          messages: [{ role: 'user', content: `${w} ${i} Four score and seven years ago` }],
          max_tokens: 40,
          stream: true,
          stream_options: { include_usage: true },
        });
        for await (const c of stream)
          if (c.usage) {
            used.prompt += c.usage.prompt_tokens;
            used.completion += c.usage.completion_tokens;
          }
        sent++;
      }
    };
    const load = Promise.all([0, 1, 2, 3, 4, 5].map(worker));
    try {
      // In flight ≈ 6 over a target of 2 per replica: it wants 3, clamped to max 2.
      await t.waitFor(
        'two healthy replicas, both serving',
        async () => {
          const d = await get();
          for (const r of d.replicas) if (r.healthy && r.inFlight > 0) served.add(r.id);
          const up = d.replicas.filter((r) => r.healthy && r.state === 'running');
          return d.target === 2 && up.length === 2 && up.every((r) => served.has(r.id)) ? d : undefined;
        },
        40_000,
      );
      const show = ok(await fabrik('deployments', 'show', id));
      expect(show).toContain('replicas       2/2 ready; min 1, max 2');
      const rows = replicaRows(show);
      expect(rows.map((r) => [r[1], r[2], r[5]])).toEqual([
        ['r0', 'running', 'yes'],
        ['r1', 'running', 'yes'],
      ]);
      expect(new Set(rows.map((r) => r[4])).size).toBe(2);
    } finally {
      stop = true;
      await load;
    }
    expect(sent).toBeGreaterThan(6);
    const d = await t.waitFor(
      'back to one replica',
      async () => {
        const v = await get();
        return v.target === 1 && v.replicas.length === 1 && v.replicas[0].healthy ? v : undefined;
      },
      30_000,
    );
    const show = ok(await fabrik('deployments', 'show', id));
    expect(show).toContain('replicas       1/1 ready; min 1, max 2');
    expect(replicaRows(show).map((r) => [r[0], r[2], r[5]])).toEqual([[d.replicas[0].id, 'running', 'yes']]);
  }, 90_000);

  it("shows the member's tokens in fabrik usage", async () => {
    const out = ok(await fabrik('usage'));
    expect(out).toMatch(/^MEMBER\s+KEY\s+NAME\s+MODEL\s+REQUESTS\s+PROMPT\s+COMPLETION\s+REASONING/);
    const row = out
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .find((c) => c[0] === 'pharma' && c[1] === keyId && c[2] === 'app' && c[3] === 'bard');
    expect(row, out).toBeDefined();
    const [, , , , requests, prompt, completion, reasoning] = row!.map(Number);
    expect(requests).toBeGreaterThanOrEqual(4 + 6);
    expect(prompt).toBeGreaterThanOrEqual(used.prompt);
    expect(completion).toBeGreaterThanOrEqual(used.completion);
    expect(reasoning).toBe(0);

    // Where pharma stands: its day budget has those tokens used, and as much less left.
    const limits = ok(await fabrik('gateway', 'limits'));
    expect(limits).toMatch(/^MEMBER\s+WHO\s+LIMIT\s+USED\s+OF\s+LEFT\s+RESETS IN/);
    const day = limits
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .find((c) => c[0] === 'pharma' && c[1] === 'member' && c[2] === 'tokens/day');
    expect(day, limits).toBeDefined();
    const [dayUsed, dayLimit, dayLeft] = day!.slice(3, 6).map(Number);
    expect(dayUsed).toBeGreaterThanOrEqual(prompt + completion);
    expect(dayLeft).toBe(dayLimit - dayUsed);
  }, 60_000);

  it('changes the bounds, lists and revokes the key', async () => {
    expect(ok(await fabrik('deployments', 'scale', id, '--max', '3')).trim()).toBe(
      `deployment ${id}: min 1, max 3, now 1 replica(s)`,
    );
    expect(await get()).toMatchObject({ min: 1, max: 3, target: 1 });

    expect(ok(await fabrik('keys', 'revoke', keyId)).trim()).toBe(`key ${keyId} revoked`);
    // The key, and when it was revoked (its last column).
    const list = ok(await fabrik('keys', 'list'));
    expect(list).toMatch(/^ID\s+NAME\s+PREFIX\s+MEMBER\s+USER\s+MODELS\s+CLASS\s+EXPIRES\s+REVOKED\s*\n/);
    expect(list).toMatch(
      new RegExp(
        `\\n${keyId}\\s+app\\s+${key.slice(0, 8)}\\S*…\\s+pharma\\s+pia\\s+bard\\s+internal\\s+\\S+\\s+\\d{4}-\\d\\d-\\d\\dT\\S+\\s*$`,
        'm',
      ),
    );

    const refused = await openai()
      .chat.completions.create({ model: 'bard', messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4 })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(AuthenticationError);
    expect((refused as AuthenticationError).status).toBe(401);
  }, 60_000);

  it('answers bad input with a sentence and a non-zero exit, never a stack trace', async () => {
    const [bounds, classification, unknown, ttl] = await Promise.all([
      fabrik('deploy', '--model', 'poet', '--min', '3', '--max', '1', '--', 'bin/fabrik', 'engine', '--model', 'poet'),
      fabrik('keys', 'create', '--name', 'x', '--classification', 'bogus'),
      fabrik('deployments', 'show', 'nosuch'),
      fabrik('keys', 'create', '--name', 'x', '--ttl-days', '0'),
    ]);
    for (const r of [bounds, classification, unknown, ttl]) {
      expect(r.code).not.toBe(0);
      expect(r.out).toBe('');
      expect(r.err).not.toMatch(/\n\s+at /);
    }
    expect(bounds.err.trim()).toBe('error: --max (1) is below --min (3).');
    expect(ttl.err.trim()).toBe(
      "error: option '--ttl-days <n>' argument '0' is invalid. --ttl-days must be a whole number above 0, got '0'.",
    );
    expect(classification.err.trim()).toBe(
      "error: option '--classification <c>' argument 'bogus' is invalid. Allowed choices are public, internal, confidential, restricted.",
    );
    expect(unknown.err.trim()).toBe('fabrik: deployment nosuch not found [NOT_FOUND]');
  }, 60_000);

  it('deletes the deployment and its replicas stop', async () => {
    const { replicas } = await get();
    expect(replicaProcesses(id).length).toBeGreaterThan(0);
    expect(ok(await fabrik('deployments', 'delete', id)).trim()).toBe(
      `deployment ${id} (bard): deleted; its replicas are stopping`,
    );
    await t.waitFor('its engines gone', async () => replicaProcesses(id).length === 0, 20_000);
    for (const r of replicas) {
      const job = await t.waitFor('the replica job ended', async () => {
        const j = await t.call<{ state: string }>(pia, 'GET', `/v1/jobs/${r.id}`);
        return j.body.state === 'cancelled' ? j.body : undefined;
      });
      expect(job.state).toBe('cancelled');
      await expect(fetch(`${r.url}/health`)).rejects.toThrow();
    }
    expect((await t.call<{ state: string }>(pia, 'GET', `/v1/deployments/${id}`)).body.state).toBe('deleted');
    id = '';
  }, 40_000);
});
