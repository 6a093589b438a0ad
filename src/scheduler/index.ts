export { cycle } from './cycle.js';
export * from './types.js';
