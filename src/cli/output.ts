// What every command that talks to a running Fabrik shares: the client from the environment,
// lines and JSON on stdout, and comma-separated option values.
import { ApiClient } from './client.js';
import { printableText, terminalJson } from './printable.js';

export const client = () => ApiClient.fromEnv();
/** Lines on stdout; each made printable (server strings in them cannot move the cursor or add lines of their own). */
export const print = (lines: readonly string[]) => console.log(lines.map((l) => printableText(l).replace(/\n/g, ' ')).join('\n'));
/** JSON on stdout, the same value, with no character a terminal would act on left raw. */
export const json = (x: unknown) => console.log(terminalJson(x));
/** `a, b,,c` → ['a', 'b', 'c']. */
export const commaList = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
