// Plain-text tables, the way squeue and sinfo print them: columns padded, no borders.
export function table(head: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: readonly string[]) =>
    r
      .map((x, i) => x.padEnd(width[i]))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)];
}
