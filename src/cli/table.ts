// Plain-text tables, the way squeue and sinfo print them: columns padded, no borders. Cells come
// from the server (job names, members' datasets): each is made printable, so no name can move
// the cursor, clear the screen or add a row.
import { printable } from './printable.js';

export { printable } from './printable.js';

export function table(head: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const clean = rows.map((r) => r.map(printable));
  const width = head.map((h, i) => Math.max(h.length, ...clean.map((r) => r[i].length)));
  const line = (r: readonly string[]) =>
    r
      .map((x, i) => x.padEnd(width[i]))
      .join('  ')
      .trimEnd();
  return [line(head), ...clean.map(line)];
}
