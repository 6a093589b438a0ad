// `fabrik up`: starts the server in the foreground; Ctrl-C (or SIGTERM) stops it gracefully:
// no new requests, the scheduling loop finishes its step, usage is saved, and running jobs keep
// running (the next start finds them again).
import { Command, InvalidArgumentError, Option } from 'commander';
import { loadConsortium, loadSite } from '../config/index.js';
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
    .option('--data <dir>', 'data folder (SQLite store, job logs, the operator token)', defaults.dataDir)
    .option('--store <url>', 'sqlite:<file> or postgres://… (default: SQLite in the data folder)')
    .addOption(
      new Option('--executor <type>', 'local: real processes on this host; simulated: the 1,152-GPU twin')
        .choices(['local', 'simulated'])
        .default('local'),
    )
    .option('--site <file>', 'site description (YAML)', defaults.site)
    .option('--consortium <file>', 'consortium description (YAML)', defaults.consortium)
    .option('--host <host>', 'address to listen on', process.env.FABRIK_HOST ?? '127.0.0.1')
    .option('--port <n>', 'port to listen on', whole('--port', 0), Number(process.env.FABRIK_PORT ?? 8080))
    .option('--gpus <n>', 'local executor: GPUs to offer when nvidia-smi finds none', whole('--gpus', 1), 4)
    .option(
      '--nodes <n>',
      'local executor: node slots to split this host into (multi-node gangs on one host)',
      whole('--nodes', 1),
      1,
    )
    .option('--cycle-seconds <n>', 'seconds between scheduling cycles when nothing happens', whole('--cycle-seconds', 1), 5)
    .option('--oidc-issuer <url>', 'accept OIDC tokens from this issuer')
    .option('--oidc-jwks <url|file>', "the issuer's JWKS (URL or local file)")
    .option('--oidc-audience <aud>', 'required audience of OIDC tokens')
    .action(async (o) => {
      const site = loadSite(o.site);
      const consortium = loadConsortium(o.consortium, site);
      const jwks: string | undefined = o.oidcJwks;
      const server = await startServer({
        dataDir: o.data,
        store: o.store ?? process.env.FABRIK_STORE,
        executor: o.executor,
        site,
        consortium,
        host: o.host,
        port: o.port,
        localGpus: o.gpus,
        localNodes: o.nodes,
        cycleSeconds: o.cycleSeconds,
        oidc: o.oidcIssuer
          ? {
              issuer: o.oidcIssuer,
              audience: o.oidcAudience,
              ...(jwks && /^https?:/.test(jwks) ? { jwksUrl: jwks } : jwks ? { jwksFile: jwks } : {}),
            }
          : null,
      });
      const s = server.site;
      console.error(
        `fabrik: listening on ${server.url}; ${o.executor} executor on ${s.totalGpus} GPUs in ${s.nodes.length} node(s); store ${server.store.engine}`,
      );
      if (server.bootstrapToken) {
        console.error('fabrik: first start: the operator token (shown once; also in the data folder, readable by you only):');
        console.log(server.bootstrapToken);
      }
      const stop = () => {
        console.error('fabrik: stopping');
        void server.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
