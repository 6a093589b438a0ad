// The data folder holds every member's secrets: after a start it is the server's alone (0700,
// files 0600), and a start on a folder or store others can read is refused, by `fabrik up` with
// exit code 2 and the chmod to run.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KEY_FILE } from '../../src/audit/checkpoint.js';
import { DataDirError, prepareDataDir } from '../../src/server/data-dir.js';
import { forEachEngine } from '../audit/engines.js';
import { testServer } from './helpers.js';

const root = new URL('../../', import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), 'fabrik-data-dir-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(scratch, `d${++n}`);
const modeOf = (p: string) => statSync(p).mode & 0o777;

forEachEngine('data folder', (engine, location) => {
  describe(`a fresh start (${engine})`, () => {
    it('makes the folder 0700 and every file the server writes in it 0600, job logs included', async () => {
      const dir = fresh();
      const loc = await location();
      const t = await testServer({ store: engine === 'sqlite' ? `sqlite:${join(dir, 'fabrik.db')}` : loc.url }, dir);
      try {
        // A member's researcher: only a member's people submit, and the job's log is what counts here.
        const token = await t.token('pharma', 'researcher', 'pia');
        const r = await t.call<{ jobs: { id: string }[] }>(token, 'POST', '/v1/jobs', {
          command: ['echo', 'hello'],
          gpus: 1,
        });
        expect(r.status).toBe(201);
        const id = r.body.jobs[0].id;
        await t.waitFor('the job to end', async () => {
          const j = await t.call<{ state: string }>(token, 'GET', `/v1/jobs/${id}`);
          return ['succeeded', 'failed'].includes(j.body.state);
        });
        expect(modeOf(dir)).toBe(0o700);
        const files = readdirSync(dir).filter((f) => statSync(join(dir, f)).isFile());
        expect(files).toEqual(expect.arrayContaining(['operator-token', KEY_FILE]));
        if (engine === 'sqlite') expect(files).toEqual(expect.arrayContaining(['fabrik.db', 'fabrik.db-wal']));
        for (const f of files) expect([f, modeOf(join(dir, f))]).toEqual([f, 0o600]);
        const log = join(dir, 'jobs', id, `fabrik-${id}.out`);
        expect(modeOf(log) & 0o077).toBe(0);
      } finally {
        await t.close();
        await loc.dispose();
      }
    });
  });
});

describe('a start on a data folder others can use is refused', () => {
  it('a 0755 folder: DataDirError naming the path, its mode and the chmod', async () => {
    const dir = fresh();
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    await expect(testServer({}, dir)).rejects.toThrow(DataDirError);
    expect(() => prepareDataDir(dir)).toThrow(`folder ${dir} has mode 0755: other users of this host can read it`);
    expect(() => prepareDataDir(dir)).toThrow(`run \`chmod 700 ${dir}\``);
    // Nothing was made in it.
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a 0644 store, -wal or -shm, a world-writable token: refused, naming the file', () => {
    for (const [file, mode, verb] of [
      ['fabrik.db', 0o644, 'read'],
      ['fabrik.db-wal', 0o640, 'read'],
      ['fabrik.db-shm', 0o604, 'read'],
      ['operator-token', 0o602, 'write'],
      [KEY_FILE, 0o666, 'read and write'],
    ] as const) {
      const dir = fresh();
      mkdirSync(dir, { mode: 0o700 });
      writeFileSync(join(dir, file), 'x');
      chmodSync(join(dir, file), mode);
      expect(() => prepareDataDir(dir), file).toThrow(
        `file ${join(dir, file)} has mode 0${mode.toString(8)}: other users of this host can ${verb} it`,
      );
      chmodSync(join(dir, file), 0o600);
      expect(() => prepareDataDir(dir), file).not.toThrow();
    }
  });

  it('a SQLite store outside the folder is checked too, and a link in place of the store is refused', () => {
    const dir = fresh();
    const elsewhere = fresh();
    mkdirSync(elsewhere);
    writeFileSync(join(elsewhere, 'x.db'), '');
    chmodSync(join(elsewhere, 'x.db'), 0o644);
    expect(() => prepareDataDir(dir, { store: `sqlite:${join(elsewhere, 'x.db')}` })).toThrow(/x\.db has mode 0644/);
    expect(() => prepareDataDir(dir, { store: 'postgres://u@127.0.0.1/test' })).not.toThrow();
    const linked = fresh();
    mkdirSync(linked, { mode: 0o700 });
    writeFileSync(join(elsewhere, 'real.db'), '', { mode: 0o600 });
    spawnSync('ln', ['-s', join(elsewhere, 'real.db'), join(linked, 'fabrik.db')]);
    expect(() => prepareDataDir(linked)).toThrow(/fabrik\.db is a symbolic link/);
  });

  it('the Slurm executor (jobs reach their folder by path): 0711 is made and accepted, 0755 still refused', () => {
    const dir = fresh();
    prepareDataDir(dir, { jobsByPath: true });
    expect([modeOf(dir), modeOf(join(dir, 'jobs'))]).toEqual([0o711, 0o711]);
    expect(() => prepareDataDir(dir)).toThrow(/has mode 0711: other users of this host can pass through it/);
    chmodSync(dir, 0o755);
    expect(() => prepareDataDir(dir, { jobsByPath: true })).toThrow(`run \`chmod 711 ${dir}\``);
  });

  it('`fabrik up` exits 2 with a message naming the store, its mode and the chmod', () => {
    const dir = fresh();
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, 'fabrik.db'), '');
    chmodSync(join(dir, 'fabrik.db'), 0o644);
    const up = spawnSync(
      process.execPath,
      ['--import', 'tsx', `${root}src/cli/main.ts`, 'up', '--data', dir, '--port', '0', '--executor', 'simulated'],
      { encoding: 'utf8', timeout: 60_000, cwd: root },
    );
    expect(up.status).toBe(2);
    expect(up.stderr).toContain(`fabrik: file ${join(dir, 'fabrik.db')} has mode 0644`);
    expect(up.stderr).toContain(`chmod 600 ${join(dir, 'fabrik.db')}`);
    expect(up.stderr).not.toMatch(/at .*\.ts:\d+/);
  });
});
