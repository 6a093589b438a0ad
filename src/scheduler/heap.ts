// A binary min-heap of (time, amount) pairs: the estimate of start times pops releases in order.
export class ReleaseHeap {
  private times: number[] = [];
  private amounts: number[] = [];

  get size(): number {
    return this.times.length;
  }

  push(time: number, amount: number): void {
    const t = this.times;
    const a = this.amounts;
    let i = t.length;
    t.push(time);
    a.push(amount);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (t[p] <= time) break;
      t[i] = t[p];
      a[i] = a[p];
      i = p;
    }
    t[i] = time;
    a[i] = amount;
  }

  /** Removes the earliest release; returns its time, and its amount through `out`. */
  pop(out: { amount: number }): number {
    const t = this.times;
    const a = this.amounts;
    const top = t[0];
    out.amount = a[0];
    const lastT = t.pop()!;
    const lastA = a.pop()!;
    const n = t.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && t[r] < t[l] ? r : l;
        if (t[c] >= lastT) break;
        t[i] = t[c];
        a[i] = a[c];
        i = c;
      }
      t[i] = lastT;
      a[i] = lastA;
    }
    return top;
  }
}
