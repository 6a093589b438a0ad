// The server's configuration: a YAML file (paths relative to it), FABRIK_* variables over it,
// flags over both; bad values named with their file, key and line, or their variable.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InvalidDescriptionError } from '../../src/core/errors.js';
import {
  checkGatewayMembers,
  InvalidEnvironmentError,
  loadServerConfig,
  mergeServerConfig,
  serverConfigFromEnv,
} from '../../src/config/index.js';

const dir = mkdtempSync(join(tmpdir(), 'fabrik-config-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

describe('server configuration', () => {
  it('reads a file, resolving its paths against its own folder', () => {
    const c = loadServerConfig(
      file(
        'a.yaml',
        'data: state\nstore: sqlite:db/f.db\nexecutor: simulated\nport: 9090\noidc:\n  issuer: https://idp.example\n  jwks: keys.json\n',
      ),
    );
    expect(c).toMatchObject({
      data: join(dir, 'state'),
      store: `sqlite:${join(dir, 'db/f.db')}`,
      executor: 'simulated',
      port: 9090,
    });
    expect(c.oidc).toEqual({ issuer: 'https://idp.example', jwks: join(dir, 'keys.json') });
  });

  it('names the file, the key and the line of a bad value', () => {
    expect(() => loadServerConfig(file('b.yaml', 'port: 8080\nexecutor: slurmish\n'))).toThrow(InvalidDescriptionError);
    expect(() => loadServerConfig(file('c.yaml', 'port: 8080\nprot: 1\n'))).toThrow(
      /c\.yaml: prot: unknown key 'prot'.*\(line 2\)/,
    );
  });

  it('lets variables override the file, and flags override both', () => {
    const fromFile = loadServerConfig(file('d.yaml', 'port: 1000\nhost: 0.0.0.0\ngpus: 8\n'));
    const fromEnv = serverConfigFromEnv({ FABRIK_PORT: '2000', FABRIK_GPUS: '' });
    const c = mergeServerConfig({ port: 8080, host: '127.0.0.1' }, fromFile, fromEnv, { port: 3000, host: undefined });
    expect(c).toMatchObject({ port: 3000, host: '0.0.0.0', gpus: 8 });
    expect(mergeServerConfig(fromFile, fromEnv).port).toBe(2000);
  });

  it('merges sections key by key: a flag for one Slurm setting keeps the others from the file', () => {
    const fromFile = loadServerConfig(file('s.yaml', 'slurm:\n  url: http://slurm:6820\n  userName: "{user}"\n'));
    const c = mergeServerConfig(fromFile, { slurm: { url: undefined, createUnixUsers: true } });
    expect(c.slurm).toEqual({ url: 'http://slurm:6820', userName: '{user}', createUnixUsers: true });
  });

  it('reads the gateway section; a bad limit names its key, a member the consortium lacks names the file', () => {
    const path = file(
      'g.yaml',
      'gateway:\n  tokensPerGpuDay: 5000000\n  tokensPerGpuMonth: 100000000\n  members:\n    pharma: { tokensPerDay: 1000, requestsPerMinute: null }\n',
    );
    const c = loadServerConfig(path);
    expect(c.gateway).toEqual({
      tokensPerGpuDay: 5_000_000,
      tokensPerGpuMonth: 100_000_000,
      members: { pharma: { tokensPerDay: 1000, requestsPerMinute: null } },
    });
    expect(() => checkGatewayMembers(c, ['pharma', 'bank'], path)).not.toThrow();
    expect(() => checkGatewayMembers(c, ['bank'], path)).toThrow(
      /g\.yaml: gateway\.members\.pharma: no member pharma in the consortium \(its members: bank\)/,
    );
    expect(() => loadServerConfig(file('h.yaml', 'gateway:\n  members:\n    pharma: { tokensPerDay: -5 }\n'))).toThrow(
      /h\.yaml: gateway\.members\.pharma\.tokensPerDay: .*\(line 3\)/,
    );
    expect(() => loadServerConfig(file('i.yaml', 'gateway:\n  tokensPerDay: 5\n'))).toThrow(/unknown key 'tokensPerDay'/);
  });

  it('names a variable with a value it cannot use', () => {
    expect(() => serverConfigFromEnv({ FABRIK_PORT: 'http' })).toThrow(InvalidEnvironmentError);
    expect(() => serverConfigFromEnv({ FABRIK_EXECUTOR: 'k8s' })).toThrow(/FABRIK_EXECUTOR='k8s'/);
  });
});
