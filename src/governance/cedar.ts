// The Cedar engine (cedar-wasm), kept healthy. Cedar parses and evaluates by recursion; when a
// call runs out of stack it traps, and a wasm trap leaves the instance's own stack pointer (a
// global in its linear memory) where the trap found it. Every trap leaks that much of the
// instance's stack, and after a few thousand of them a plain policy fails with "memory access out
// of bounds" (the fuzz of PUT /v1/policies found it: admission then answered 500 for everyone).
// So a call that throws discards the instance: the module is loaded again, with fresh memory,
// before the next call. Cedar answers ordinary failures as values; only traps throw.
import { createRequire } from 'node:module';

type CedarModule = typeof import('@cedar-policy/cedar-wasm/nodejs');

const require = createRequire(import.meta.url);
// The Node.js build is CommonJS that instantiates the wasm when it is loaded: loading it again
// (out of the require cache) makes a new instance.
const MODULE = require.resolve('@cedar-policy/cedar-wasm/nodejs');
let instance: CedarModule = require(MODULE) as CedarModule;
let replaced = 0;

/** Runs `call` on the Cedar instance; if it throws, the instance is replaced and the error rethrown. */
export function withCedar<T>(call: (cedar: CedarModule) => T): T {
  try {
    return call(instance);
  } catch (e) {
    delete require.cache[MODULE];
    instance = require(MODULE) as CedarModule;
    replaced++;
    throw e;
  }
}

/** How many times a trap made a new instance (for tests). */
export const cedarInstancesReplaced = () => replaced;
