// npm run bench:cli — how long the fabrik CLI takes to start, measured side by side in one run:
// - floor: Node with tsx and nothing else (`node --import tsx -e ''`), what any command pays;
// - command: `fabrik jobs --help`, a command that talks to the API (it loads its own module only);
// - every command: `fabrik --help`, which loads every command's module (what each command cost
//   before commands were loaded on demand);
// - engine ready: `fabrik engine --model m --port 0` until it prints FABRIK_ENGINE_URL, the cold
//   start of a deployment's replica with the bundled engine (the corpus's Markov model included).
// Runs alternate, BENCH_RUNS of each (default 15) after one warm-up. Last line:
// {"engine_ready_ms_p50":…,"command_ms_p50":…,"every_command_ms_p50":…,"floor_ms_p50":…}
import { spawn } from 'node:child_process';

const root = new URL('../', import.meta.url).pathname;
const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const main = `${root}src/cli/main.ts`;

/** Milliseconds from spawn until `ready` matches stdout (then it is killed) or the process exits 0. */
function time(args: string[], ready?: RegExp): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let done = false;
    p.stdout.on('data', (d) => {
      out += d;
      if (ready && !done && ready.test(out)) {
        done = true;
        resolve(performance.now() - t0);
        p.kill('SIGKILL');
      }
    });
    p.stderr.resume();
    p.on('exit', (code) => {
      if (done) return;
      if (code === 0 && !ready) resolve(performance.now() - t0);
      else reject(new Error(`${args.join(' ')} exited with ${code}: ${out}`));
    });
  });
}

const cases: Record<string, () => Promise<number>> = {
  floor: () => time(['-e', '']),
  command: () => time([main, 'jobs', '--help']),
  every_command: () => time([main, '--help']),
  engine_ready: () => time([main, 'engine', '--model', 'm', '--port', '0'], /FABRIK_ENGINE_URL=/),
};

const samples: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (const run of Object.values(cases)) await run(); // warm-up: tsx's transform cache, the page cache
for (let i = 0; i < RUNS; i++) for (const [k, run] of Object.entries(cases)) samples[k].push(await run());

const p50 = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
};
const r = (x: number) => Math.round(x);
console.log('case            p50 ms   min ms   max ms');
for (const [k, xs] of Object.entries(samples))
  console.log(
    `${k.padEnd(15)} ${String(r(p50(xs))).padStart(6)}   ${String(r(Math.min(...xs))).padStart(6)}   ${String(r(Math.max(...xs))).padStart(6)}`,
  );
const floor = p50(samples.floor);
console.log(
  `above the floor: a command ${r(p50(samples.command) - floor)} ms, every command ${r(p50(samples.every_command) - floor)} ms (${(
    (p50(samples.every_command) - floor) /
    Math.max(1, p50(samples.command) - floor)
  ).toFixed(1)}×)`,
);
console.log(
  JSON.stringify({
    engine_ready_ms_p50: r(p50(samples.engine_ready)),
    command_ms_p50: r(p50(samples.command)),
    every_command_ms_p50: r(p50(samples.every_command)),
    floor_ms_p50: r(floor),
  }),
);
