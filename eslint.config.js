// One table says what may import what. Dependencies point downward only (see DESIGN.md):
// core and scheduler are pure — no I/O, no clock, no randomness of their own — so the
// simulator can replay a trace through exactly the code that runs in production.
import tseslint from 'typescript-eslint';

/** layer → the layers it may import (itself always allowed). */
const LAYERS = {
  core: [],
  scheduler: ['core'],
  config: ['core'],
  sim: ['core', 'scheduler'],
  testing: ['core', 'scheduler', 'config', 'sim'],
  api: [],
  // The audit log: its Merkle tree, checkpoints and tables; the store runs its migration.
  audit: ['core'],
  store: ['core', 'api', 'audit'],
  executors: ['core', 'api'],
  server: ['core', 'scheduler', 'config', 'sim', 'api', 'store', 'executors', 'audit'],
  cli: ['core', 'scheduler', 'config', 'sim', 'api', 'server', 'store', 'executors', 'audit'],
};
const PURE = ['core', 'scheduler'];

const layerRules = Object.entries(LAYERS).map(([layer, allowed]) => {
  const forbidden = Object.keys(LAYERS).filter((l) => l !== layer && !allowed.includes(l));
  const patterns = forbidden.map((l) => ({
    group: [`**/${l}/**`, `../${l}/*`, `../../${l}/*`],
    message: `${layer} may import only ${[layer, ...allowed].join(', ')} (see eslint.config.js).`,
  }));
  if (PURE.includes(layer)) {
    patterns.push({
      group: ['node:*', 'fs', 'path', 'os', 'child_process', 'net', 'http'],
      message: `${layer} is pure: no I/O.`,
    });
  }
  return {
    files: [`src/${layer}/**/*.ts`],
    rules: {
      'no-restricted-imports': ['error', { patterns }],
      ...(PURE.includes(layer)
        ? {
            'no-restricted-properties': [
              'error',
              { object: 'Date', property: 'now', message: 'pure layer: time is passed in.' },
              { object: 'Math', property: 'random', message: 'pure layer: randomness is passed in.' },
              { object: 'performance', property: 'now', message: 'pure layer: time is passed in.' },
            ],
            'no-restricted-syntax': [
              'error',
              { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'pure layer: time is passed in.' },
            ],
            'no-restricted-globals': ['error', 'process', 'setTimeout', 'setInterval', 'fetch'],
          }
        : {}),
    },
  };
});

export default tseslint.config(
  // .fabrik/ is the data folder `npm start` makes here (the local executor writes a rank wrapper into it).
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.fabrik/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  ...layerRules,
);
