// The policies the simulator can compare. Adding one is a file beside this one and a line here.
import type { Policy } from '../policy.js';
import { fabrik } from './fabrik.js';
import { fifo } from './fifo.js';
import { slurm } from './slurm.js';

export const POLICIES: Readonly<Record<string, Policy>> = { fifo, slurm, fabrik };
