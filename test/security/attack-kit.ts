// What the attack suites share: a victim member's work with secrets planted in it, an attacker's
// job that tries every way out of its sandbox a member's job has been seen to try, and the checks
// that nothing of the victim or of the server reached the attacker's log.
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';

/** Random markers: if one of them shows up where it must not, it came from where it was planted. */
export interface Planted {
  /** In the victim's secret environment. */
  readonly victimSecret: string;
  /** In the victim's plain environment (its owner's business only). */
  readonly victimEnv: string;
  /** Written by the victim into its own output log. */
  readonly victimOutput: string;
}

export const plant = (): Planted => ({
  victimSecret: `vsecret-${randomBytes(12).toString('hex')}`,
  victimEnv: `venv-${randomBytes(12).toString('hex')}`,
  victimOutput: `vout-${randomBytes(12).toString('hex')}`,
});

/** The victim: a long job that keeps its secrets in its environment and writes its marker to its log. */
export function victimJob(p: Planted): Record<string, unknown> {
  return {
    name: 'victim',
    script: `#!/bin/bash\necho "${p.victimOutput}"\nexec sleep 600\n`,
    env: { VICTIM_PLAIN: p.victimEnv },
    secretEnv: { VICTIM_SECRET: p.victimSecret },
    walltimeSeconds: 900,
  };
}

export interface Targets {
  readonly dataDir: string;
  readonly victimJobId: string;
  /** TCP ports the attacker must not reach: the store, the API, the victim's model replica… */
  readonly ports: Readonly<Record<string, number>>;
  /** Folders of the victim's job (its output, its files). */
  readonly victimFolders: readonly string[];
}

/**
 * The attacker's job: everything a member's job was seen to try. Each probe prints what it got;
 * the test then looks for the planted markers and the server's secrets in the log.
 */
export function attackerScript(x: Targets, o: { harmful?: boolean } = { harmful: true }): string {
  const ports = Object.entries(x.ports)
    .map(([name, port]) => `probe_port ${name} ${port}`)
    .join('\n');
  const folders = x.victimFolders.map((f) => `dump "${f}"`).join('\n');
  return `#!/bin/bash
echo "whoami: $(id)"
dump() { for f in "$1" "$1"/* "$1"/.* ; do [ -f "$f" ] && { echo "== $f"; head -c 65536 "$f" 2>&1; echo; } ; done; ls -la "$1" 2>&1; }
# The server's data folder: the store, the operator token, the audit signing key, other jobs.
dump "${x.dataDir}"
dump "${x.dataDir}/jobs"
${folders}
# Every process it can see: their environments and command lines.
for p in /proc/[0-9]*; do
  echo "== $p $(tr '\\0' ' ' < $p/cmdline 2>/dev/null)"
  tr '\\0' '\\n' < $p/environ 2>&1 | head -c 65536
done
# Ports it must not reach.
probe_port() { if (exec 3<>/dev/tcp/127.0.0.1/$2) 2>/dev/null; then echo "CONNECTED $1 $2"; else echo "refused $1 $2"; fi; }
${ports}
${o.harmful ? HARM(x.dataDir) : ''}
echo "attack done"
`;
}

/**
 * What the attacker breaks when it can: the store and the operator token tampered with, every
 * process it can signal killed (its own shell last). Left out of the unconfined control run, which
 * runs as root on the test host.
 */
const HARM = (dataDir: string) => `# Tamper with the store and the operator token.
echo tampered >> "${dataDir}/fabrik.db" 2>&1 && echo "WROTE store"
echo tampered >> "${dataDir}/operator-token" 2>&1 && echo "WROTE operator-token"
# Every process it can signal, killed.
for p in /proc/[0-9]*; do q=\${p#/proc/}; [ "$q" != "$$" ] && kill -9 "$q" 2>/dev/null && echo "KILLED $q $(cat $p/comm 2>/dev/null)"; done`;

/** What must never be in an attacker's log: the planted markers, the server's secrets and the store's files. */
export function serverSecrets(dataDir: string, extra: readonly string[] = []): string[] {
  const secrets = [...extra];
  const read = (f: string) => {
    try {
      return readFileSync(join(dataDir, f), 'utf8').trim();
    } catch {
      return null;
    }
  };
  const token = read('operator-token');
  if (token) secrets.push(token);
  for (const f of readdirSync(dataDir)) {
    if (!/\.(key|pem)$/.test(f)) continue;
    const pem = read(f);
    // The key's base64 body (the PEM armour is public knowledge).
    if (pem) secrets.push(...pem.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----')));
  }
  return secrets;
}

/** Fails naming the first secret found in `text` (shortened, so that the failure itself leaks little). */
export function expectNoneOf(text: string, secrets: readonly string[], where: string): void {
  for (const s of secrets) {
    if (s && text.includes(s)) expect.fail(`${where} contains a secret it must not (${s.slice(0, 8)}…)`);
  }
}

/**
 * The attacker's job ran to its end as telecom's own user, and nothing of the server or of the
 * victim reached its log; what it wrote, it wrote into its own view: the server's files are as
 * they were.
 */
export function expectAttackerGotNothing(o: {
  readonly log: string;
  readonly err: string;
  readonly jobId: string;
  readonly dataDir: string;
  readonly engine: 'sqlite' | 'postgres';
  readonly operatorBefore: string;
  /** The planted markers and the server's own secret. */
  readonly secrets: readonly string[];
}): void {
  const all = o.log + o.err;
  expect(o.log, o.err).toContain('attack done');
  expect(o.log).toMatch(/whoami: uid=\d+\(telecom-tom\)/);
  expectNoneOf(all, [...o.secrets, ...serverSecrets(o.dataDir)], `the attacker's log (job ${o.jobId})`);
  expect(readFileSync(join(o.dataDir, 'operator-token'), 'utf8').trim()).toBe(o.operatorBefore);
  if (o.engine === 'sqlite') expect(readFileSync(join(o.dataDir, 'fabrik.db'), 'latin1')).not.toContain('tampered');
}
