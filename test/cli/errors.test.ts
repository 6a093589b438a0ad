// Every error the CLI answers with a line is known to cliFailure by its class's own name: each
// class made here, as the modules throw it, gets its exit code (2: what a person typed or wrote;
// 1: reaching Fabrik, its store or Slurm, or a check that failed); anything else is a bug's trace.
import { describe, expect, it } from 'vitest';
import { AuditFileError, AuditVerificationError } from '../../src/cli/audit.js';
import { ApiRequestError, UnreachableError } from '../../src/cli/client.js';
import { EngineUsageError } from '../../src/cli/engine.js';
import { cliFailure } from '../../src/cli/errors.js';
import { GovernanceUsageError } from '../../src/cli/governance.js';
import { SiteImportError } from '../../src/cli/site-import.js';
import { SubmitUsageError } from '../../src/cli/submit.js';
import { InvalidEnvironmentError } from '../../src/config/index.js';
import { InvalidDescriptionError } from '../../src/core/errors.js';
import { SlurmRestError } from '../../src/executors/slurm-rest.js';
import { DataDirError } from '../../src/server/data-dir.js';
import { SiteMismatchError } from '../../src/server/site.js';
import { WorkloadTooShortError } from '../../src/sim/generate.js';
import { UnknownPolicyError } from '../../src/sim/run.js';
import { StoreMigrationError, StoreUnavailableError, StoreUrlError } from '../../src/store/errors.js';

describe('cliFailure', () => {
  it('what a person typed or wrote: exit 2 with the message', () => {
    for (const e of [
      new GovernanceUsageError('x'),
      new InvalidDescriptionError('f.yaml', 'a.b', 'x'),
      new UnknownPolicyError('x'),
      new SubmitUsageError('x'),
      new InvalidEnvironmentError('FABRIK_PORT', 'x', 'a number'),
      new SiteImportError('x'),
      new SiteMismatchError('x'),
      new AuditFileError('f.json', 'x'),
      new EngineUsageError('x'),
      new DataDirError('/x', 'x'),
      new WorkloadTooShortError('reclaim-storm', 3, 'storm-1'),
    ])
      expect(cliFailure(e), e.constructor.name).toEqual({ line: `fabrik: ${e.message}`, code: 2 });
  });

  it('reaching Fabrik, its store or Slurm, or a failed check: exit 1 with the message', () => {
    for (const e of [
      new UnreachableError('http://127.0.0.1:8080', 'ECONNREFUSED'),
      new StoreUrlError('x', 'x'),
      new StoreUnavailableError('x', 'x'),
      new StoreMigrationError(null, 'x'),
      new SlurmRestError(0, 'GET', '/x', ['x']),
      new AuditVerificationError('x'),
    ])
      expect(cliFailure(e), e.constructor.name).toEqual({ line: `fabrik: ${e.message}`, code: 1 });
  });

  it("the API's refusal names its field once and its code", () => {
    expect(cliFailure(new ApiRequestError(400, 'VALIDATION_FAILED', 'must be positive', 'body.gpus'))).toEqual({
      line: 'fabrik: must be positive (body.gpus) [VALIDATION_FAILED]',
      code: 1,
    });
    expect(cliFailure(new ApiRequestError(400, 'VALIDATION_FAILED', 'body.gpus: must be positive', 'body.gpus'))?.line).toBe(
      'fabrik: body.gpus: must be positive [VALIDATION_FAILED]',
    );
  });

  it('a port in use is a line; anything else is a bug (null: its trace is printed)', () => {
    const inUse = Object.assign(new Error('listen EADDRINUSE: address already in use 127.0.0.1:8080'), { code: 'EADDRINUSE' });
    expect(cliFailure(inUse)?.code).toBe(1);
    expect(cliFailure(new TypeError('x'))).toBeNull();
    expect(cliFailure('a string')).toBeNull();
  });
});
