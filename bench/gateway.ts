// npm run bench:gateway — the latency the gateway adds to a streamed completion, against calling
// the engine directly, in the same run: the bundled engine (`fabrik engine`, its own process), a
// `fabrik up`-like server with the gateway and that engine as its one replica (its own process),
// and an open-loop load generator (this process) that sends at a fixed rate whatever the answers
// do, alternating direct and gateway requests, each at the rate. Time to first byte and to
// `[DONE]` per path; the added latency is the gateway's quantile minus the engine's. A rate is held
// when every request succeeded and the generator kept its schedule. Last line:
// {"added_latency_ms_p50":…,"added_latency_ms_p99":…,"rate_per_s":…}
// (p50 and p99 at BENCH_RATE, 500/s by default; rate_per_s: the highest rate held.)
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'node:http';
import { memberAdminToken } from './fabrik-up.js';

const root = new URL('../', import.meta.url).pathname;
const RATES = (process.env.BENCH_RATES ?? '100,250,500,750').split(',').map(Number);
const REPORT_RATE = Number(process.env.BENCH_RATE ?? 500);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const WARMUP = 1;
const MAX_TOKENS = Number(process.env.BENCH_MAX_TOKENS ?? 4);

function child(args: string[], pattern: RegExp, profile = false): Promise<{ proc: ChildProcess; match: RegExpExecArray }> {
  // BENCH_CPU_PROF=<dir>: a V8 CPU profile of the gateway's server, to see where its time goes.
  const prof = profile && process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
  const proc = spawn(process.execPath, [...prof, '--import', 'tsx', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FABRIK_LOG_LEVEL: 'warn' },
  });
  let out = '';
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    proc.stdout!.on('data', (d) => {
      out += d;
      const match = pattern.exec(out);
      if (match) resolve({ proc, match });
    });
    proc.on('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}:\n${err}`)));
  });
}

const stop = (p: ChildProcess) =>
  new Promise<void>((r) => {
    if (p.exitCode !== null) return r();
    p.removeAllListeners('exit');
    p.once('exit', () => r());
    p.kill('SIGTERM');
  });

interface Sample {
  ttfb: number;
  done: number;
}

/** One streamed chat completion: ms to the first byte of the body and to its end (after [DONE]). */
function stream(agent: Agent, url: URL, headers: Record<string, string | number>, body: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let ttfb = 0;
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return reject(new Error(`status ${res.statusCode}`));
      }
      let tail = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (ttfb === 0) ttfb = performance.now() - t0;
        tail = (tail + d).slice(-32);
      });
      res.on('end', () =>
        tail.includes('[DONE]') ? resolve({ ttfb, done: performance.now() - t0 }) : reject(new Error('no [DONE]')),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
};

interface RateResult {
  rate: number;
  direct: Sample[];
  gateway: Sample[];
  errors: number;
  lateP99: number;
}

async function run(rate: number, engine: string, gateway: string, key: string): Promise<RateResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 4096 });
  const body = JSON.stringify({
    model: 'bench',
    messages: [{ role: 'user', content: 'Say something short.' }],
    stream: true,
    max_tokens: MAX_TOKENS,
  });
  const base = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
  const targets = [
    { url: new URL(`${engine}/v1/chat/completions`), headers: { ...base, authorization: `Bearer ${replicaToken}` } },
    { url: new URL(`${gateway}/v1/chat/completions`), headers: { ...base, authorization: `Bearer ${key}` } },
  ];
  const out: RateResult = { rate, direct: [], gateway: [], errors: 0, lateP99: 0 };
  const late: number[] = [];
  const pending: Promise<void>[] = [];
  // Each path at `rate`: a request every 1/(2·rate) s, alternating paths.
  const interval = 1000 / (2 * rate);
  const total = Math.round((WARMUP + SECONDS) * rate * 2);
  const start = performance.now() + 20;
  let i = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      while (i < total && start + i * interval <= now) {
        const due = start + i * interval;
        const which = i % 2;
        const measured = i >= WARMUP * rate * 2;
        if (measured) late.push(now - due);
        const t = targets[which];
        pending.push(
          stream(agent, t.url, t.headers, body).then(
            (s) => void (measured && (which === 0 ? out.direct : out.gateway).push(s)),
            () => void out.errors++,
          ),
        );
        i++;
      }
      if (i >= total) return resolve();
      setTimeout(tick, Math.max(0, start + i * interval - performance.now() - 0.5));
    };
    tick();
  });
  await Promise.all(pending);
  agent.destroy();
  out.lateP99 = q(late, 0.99);
  return out;
}

// The engine requires a replica token, as a deployment's replica does: both paths present it (the
// gateway-server's replica carries it), so the figures include checking it.
const replicaToken = randomBytes(32).toString('base64url');
process.env.FABRIK_ENGINE_API_KEY = replicaToken;
const { proc: engineProc, match: em } = await child(
  [`${root}src/cli/main.ts`, 'engine', '--model', 'bench', '--port', '0', '--ttft-ms', '1', '--itl-ms', '1'],
  /FABRIK_ENGINE_URL=(\S+)/,
);
const engineUrl = em[1];
const { proc: serverProc, match: sm } = await child([`${root}bench/gateway-server.ts`, engineUrl], /^(\{.*\})$/m, true);
const { url: gatewayUrl, token } = JSON.parse(sm[1]) as { url: string; token: string };
try {
  // Pharma's admin makes the key: an operator makes none for a member.
  const pharma = await memberAdminToken(gatewayUrl, token, 'pharma');
  const res = await fetch(`${gatewayUrl}/v1/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${pharma}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench', models: ['bench'] }),
  });
  const { secret } = (await res.json()) as { secret: string };
  console.log(
    `engine: ${engineUrl} (ttft 1 ms, itl 1 ms, ${MAX_TOKENS} tokens); gateway: ${gatewayUrl}; ${SECONDS} s per rate, open loop`,
  );
  console.log('rate/s  path     ttfb p50  ttfb p99  done p50  done p99   added ttfb p50/p99  errors  late p99');
  const results: RateResult[] = [];
  for (const rate of RATES) {
    const r = await run(rate, engineUrl, gatewayUrl, secret);
    results.push(r);
    const row = (name: string, s: Sample[]) =>
      `${String(rate).padStart(6)}  ${name.padEnd(7)} ${[
        q(
          s.map((x) => x.ttfb),
          0.5,
        ),
        q(
          s.map((x) => x.ttfb),
          0.99,
        ),
        q(
          s.map((x) => x.done),
          0.5,
        ),
        q(
          s.map((x) => x.done),
          0.99,
        ),
      ]
        .map((v) => v.toFixed(2).padStart(8))
        .join('  ')}`;
    const [a50, a99] = added(r);
    console.log(row('direct', r.direct));
    console.log(
      `${row('gateway', r.gateway)}   ${a50.toFixed(2).padStart(8)} / ${a99.toFixed(2).padEnd(8)}  ${String(r.errors).padStart(6)}  ${r.lateP99.toFixed(1)} ms`,
    );
  }
  const held = results.filter((r) => r.errors === 0 && r.lateP99 < 10 && added(r)[1] < 5).map((r) => r.rate);
  const at = results.find((r) => r.rate === REPORT_RATE) ?? results.at(-1)!;
  const [p50, p99] = added(at);
  console.log(
    `at ${at.rate}/s the gateway adds ${p50.toFixed(2)} ms at p50 and ${p99.toFixed(2)} ms at p99 to the first byte (LiteLLM publishes 2 ms / 13 ms)`,
  );
  console.log(
    JSON.stringify({
      added_latency_ms_p50: round(p50),
      added_latency_ms_p99: round(p99),
      rate_per_s: held.length ? Math.max(...held) : 0,
    }),
  );
} finally {
  await stop(serverProc);
  await stop(engineProc);
}

/** The gateway's time-to-first-byte quantiles minus the engine's, measured side by side. */
function added(r: RateResult): [number, number] {
  const g = r.gateway.map((x) => x.ttfb);
  const d = r.direct.map((x) => x.ttfb);
  return [q(g, 0.5) - q(d, 0.5), q(g, 0.99) - q(d, 0.99)];
}
function round(v: number) {
  return Math.round(v * 1000) / 1000;
}
