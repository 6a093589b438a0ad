// What every command that talks to a running Fabrik shares: the client from the environment,
// lines and JSON on stdout, and comma-separated option values.
import { ApiClient } from './client.js';

export const client = () => ApiClient.fromEnv();
export const print = (lines: readonly string[]) => console.log(lines.join('\n'));
export const json = (x: unknown) => console.log(JSON.stringify(x, null, 2));
/** `a, b,,c` → ['a', 'b', 'c']. */
export const commaList = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
