// `fabrik up`: starts the server in the foreground; Ctrl-C (or SIGTERM) stops it gracefully:
// no new requests, the scheduling loop finishes its step, usage is saved, and running jobs keep
// running (the next start finds them again). Settings: flags over FABRIK_* variables over the
// --config file over the defaults.
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  checkGatewayMembers,
  loadConsortium,
  loadServerConfig,
  loadSite,
  mergeServerConfig,
  serverConfigFromEnv,
  type ServerFileConfig,
} from '../config/index.js';
import { describeIsolation, probeIsolation } from '../executors/isolation/sandbox.js';
import { startServer } from '../server/index.js';

function whole(name: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number ≥ ${min}, got '${v}'.`);
    return n;
  };
}

export function upCommand(defaults: { site: string; consortium: string; dataDir: string }): Command {
  return new Command('up')
    .description('start Fabrik: the API, the scheduling loop and the executor')
    .option('--config <file>', 'server configuration (YAML); FABRIK_* variables and these flags override it')
    .option('--data <dir>', `data folder: SQLite store, job logs, the operator token (default ${defaults.dataDir})`)
    .option('--store <url>', 'sqlite:<file> or postgres://… (default: SQLite in the data folder)')
    .addOption(
      new Option(
        '--executor <type>',
        'local: real processes on this host (default); slurm: a Slurm cluster through slurmrestd; simulated: the 1,152-GPU twin',
      ).choices(['local', 'slurm', 'simulated']),
    )
    .option('--site <file>', 'site description (YAML; default se-factory)')
    .option('--consortium <file>', 'consortium description (YAML; default the demo consortium)')
    .option('--host <host>', 'address to listen on (default 127.0.0.1)')
    .option('--port <n>', 'port to listen on (default 8080; 0: any free port)', whole('--port', 0))
    .option('--gpus <n>', 'local executor: GPUs to offer when nvidia-smi finds none (default 4)', whole('--gpus', 1))
    .option(
      '--nodes <n>',
      'local executor: node slots to split this host into, for multi-node gangs (default 1)',
      whole('--nodes', 1),
    )
    .option(
      '--cycle-seconds <n>',
      'seconds between scheduling cycles when nothing happens (default 5)',
      whole('--cycle-seconds', 1),
    )
    .option(
      '--single-tenant',
      'local executor: run jobs unisolated even for several members where this host cannot isolate them (members that trust each other only)',
    )
    .option('--gpu-devices <dir>', 'local executor: where the GPU device files (nvidia0, nvidiactl…) are (default /dev)')
    .option('--slurm-url <url>', 'slurm executor: slurmrestd (default http://127.0.0.1:6820)')
    .option('--slurm-jwt-key <file>', "slurm executor: the cluster's JWT key (default /var/spool/slurm/ctld/jwt_hs256.key)")
    .option('--slurm-partition <name>', 'slurm executor: the partition to submit to (default: the cluster default)')
    .option(
      '--slurm-user-name <template>',
      "slurm executor: a Fabrik user's Unix user, {member} and {user} replaced (default {member}-{user})",
    )
    .option('--slurm-create-users', 'slurm executor: create missing Unix users on this host (default: they must exist)')
    .option('--oidc-issuer <url>', 'accept OIDC tokens from this issuer')
    .option('--oidc-jwks <url|file>', "the issuer's JWKS (URL or local file)")
    .option('--oidc-audience <aud>', 'required audience of OIDC tokens')
    .action(async (o) => {
      const flags: ServerFileConfig = {
        data: o.data,
        store: o.store,
        executor: o.executor,
        site: o.site,
        consortium: o.consortium,
        host: o.host,
        port: o.port,
        gpus: o.gpus,
        nodes: o.nodes,
        cycleSeconds: o.cycleSeconds,
        singleTenant: o.singleTenant,
        local: o.gpuDevices ? { deviceDir: o.gpuDevices } : undefined,
        oidc: o.oidcIssuer ? { issuer: o.oidcIssuer, jwks: o.oidcJwks, audience: o.oidcAudience } : undefined,
        slurm:
          o.slurmUrl || o.slurmJwtKey || o.slurmPartition || o.slurmUserName || o.slurmCreateUsers
            ? {
                url: o.slurmUrl,
                jwtKey: o.slurmJwtKey,
                partition: o.slurmPartition,
                userName: o.slurmUserName,
                createUnixUsers: o.slurmCreateUsers,
              }
            : undefined,
      };
      const c = mergeServerConfig(
        {
          data: defaults.dataDir,
          site: defaults.site,
          consortium: defaults.consortium,
          executor: 'local',
          host: '127.0.0.1',
          port: 8080,
        },
        o.config ? loadServerConfig(o.config) : {},
        serverConfigFromEnv(process.env),
        flags,
      );
      const site = loadSite(c.site!);
      const consortium = loadConsortium(c.consortium!, site);
      checkGatewayMembers(
        c,
        consortium.members.map((m) => m.id),
        o.config,
      );
      const localIsolation = c.executor === 'local' ? isolationFor(consortium.members.length, c.singleTenant === true) : null;
      if (localIsolation !== null && localIsolation.refusal) {
        console.error(localIsolation.refusal);
        process.exit(2);
      }
      const jwks = c.oidc?.jwks;
      const server = await startServer({
        dataDir: c.data!,
        store: c.store,
        executor: c.executor!,
        site,
        consortium,
        host: c.host,
        port: c.port,
        localGpus: c.gpus,
        localNodes: c.nodes,
        localIsolation: localIsolation?.probe.available
          ? { probe: localIsolation.probe, deviceDir: c.local?.deviceDir, userName: c.local?.userName }
          : null,
        cycleSeconds: c.cycleSeconds,
        gateway: c.gateway,
        slurm: c.slurm && {
          url: c.slurm.url,
          jwtKeyFile: c.slurm.jwtKey,
          partition: c.slurm.partition ?? null,
          userName: c.slurm.userName,
          createUnixUsers: c.slurm.createUnixUsers,
          manageAccounts: c.slurm.manageAccounts,
        },
        oidc: c.oidc
          ? {
              issuer: c.oidc.issuer,
              audience: c.oidc.audience,
              memberClaim: c.oidc.memberClaim,
              roleClaim: c.oidc.roleClaim,
              ...(jwks && /^https?:/.test(jwks) ? { jwksUrl: jwks } : jwks ? { jwksFile: jwks } : {}),
            }
          : null,
      });
      const s = server.site;
      console.error(
        `fabrik: listening on ${server.url}; ${c.executor} executor on ${s.totalGpus} GPUs in ${s.nodes.length} node(s); store ${server.store.engine}`,
      );
      if (server.bootstrapToken) {
        console.error('fabrik: first start: the operator token (shown once; also in the data folder, readable by you only):');
        console.log(server.bootstrapToken);
      }
      if (localIsolation) console.error(`fabrik: ${describeIsolation(localIsolation.probe)}`);
      // Unisolated jobs run as this process's user with the host's /dev: these settings have nothing to act on.
      if (localIsolation && !localIsolation.probe.available && (c.local?.deviceDir || c.local?.userName))
        console.error(
          'fabrik: warning: local.deviceDir / local.userName (--gpu-devices) apply to isolated jobs only; ignored, since jobs here are not isolated',
        );
      const stop = () => {
        console.error('fabrik: stopping');
        void server.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}

/**
 * Whether the local executor isolates jobs: always where the host can; where it cannot, it runs
 * them as the server's own user only for one member, or when the operator said --single-tenant.
 */
function isolationFor(members: number, singleTenant: boolean) {
  const probe = probeIsolation();
  if (probe.available || members <= 1 || singleTenant) return { probe, refusal: null };
  return {
    probe,
    refusal:
      `fabrik: refusing to run the local executor for ${members} members: this host cannot isolate their jobs ` +
      `(${probe.problems.join('; ')}), so each member's jobs could read the others' data and the server's secrets. ` +
      'Run Fabrik as root with bubblewrap installed (sudo scripts/isolation/install.sh), or, if every member trusts ' +
      'every other, pass --single-tenant.',
  };
}
