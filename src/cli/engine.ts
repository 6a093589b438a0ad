// `fabrik engine`: the bundled OpenAI-compatible engine, in the foreground. A deployment starts it
// as a replica's command the way it would start vLLM; the port comes from --port, or from the
// environment the deployment sets (FABRIK_ENGINE_PORT, then PORT), since a job learns its port
// from the scheduler only when it starts. Once listening it prints FABRIK_ENGINE_URL=… on stdout
// (the one line a supervisor reads) and the URL on stderr (for a person). A replica's key comes from
// FABRIK_ENGINE_API_KEY only, never a flag: argv is readable by every user of the node (`ps`).
import { Command, InvalidArgumentError } from 'commander';
import { startEngine } from '../inference/engine/index.js';

export class EngineUsageError extends Error {
  override readonly name = 'EngineUsageError';
}

function whole(name: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be a whole number ≥ ${min}, got '${v}'.`);
    return n;
  };
}

function portFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  for (const name of ['FABRIK_ENGINE_PORT', 'PORT']) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new EngineUsageError(`${name} must be a port (0-65535), got '${v}'.`);
    return n;
  }
  return undefined;
}

/** The key callers must present (the deployment sets it as a secret of the replica's job), or none. */
function apiKeyFromEnv(env: NodeJS.ProcessEnv): string | undefined {
  const v = env.FABRIK_ENGINE_API_KEY;
  if (v === undefined) return undefined;
  // Set but empty is a mistake that would leave the engine open to every caller: refused, not ignored.
  if (v.trim() === '')
    throw new EngineUsageError('FABRIK_ENGINE_API_KEY is set but empty: give the key callers must present, or unset it.');
  return v;
}

export function engineCommand(): Command {
  return new Command('engine')
    .description('start the bundled OpenAI-compatible engine (a Markov model of a public-domain corpus, on the CPU)')
    .requiredOption('--model <name>', 'the model name clients call')
    .option('--port <n>', 'port (0: any free port; default $FABRIK_ENGINE_PORT, then $PORT, then 8000)', whole('--port', 0))
    .option('--host <host>', 'address to listen on (default $FABRIK_ENGINE_HOST, then 127.0.0.1)')
    .option('--ttft-ms <n>', 'time to first token, in milliseconds', whole('--ttft-ms', 0), 50)
    .option('--itl-ms <n>', 'inter-token latency, in milliseconds', whole('--itl-ms', 0), 10)
    .option('--reasoning', 'a reasoning model: it thinks (reasoning_content) before it answers')
    .option('--seed <n>', 'make requests without a seed reproducible too', whole('--seed', 0))
    .action(async (o) => {
      if (o.port !== undefined && o.port > 65535) throw new EngineUsageError(`--port must be at most 65535, got ${o.port}.`);
      const engine = await startEngine({
        model: o.model,
        // A deployment's replica on a cluster node is told to listen where the server reaches it.
        host: o.host ?? (process.env.FABRIK_ENGINE_HOST || '127.0.0.1'),
        port: o.port ?? portFromEnv(process.env) ?? 8000,
        ttftMs: o.ttftMs,
        itlMs: o.itlMs,
        reasoning: o.reasoning === true,
        seed: o.seed,
        apiKey: apiKeyFromEnv(process.env),
      });
      const guarded = process.env.FABRIK_ENGINE_API_KEY === undefined ? '' : ', callers must present FABRIK_ENGINE_API_KEY';
      console.error(`fabrik engine: model ${o.model}${o.reasoning ? ' (reasoning)' : ''} at ${engine.url}/v1${guarded}`);
      console.log(`FABRIK_ENGINE_URL=${engine.url}`);
      const stop = () => {
        void engine.close().then(() => process.exit(0));
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
}
