// Group commit: writes that arrive in the same turn of the event loop share one transaction,
// so a burst of submissions costs one fsync (SQLite) or one round of commit (PostgreSQL)
// instead of one each. Each caller still gets its own outcome or its own error.

export interface GroupCommitStats {
  /** Items written and acknowledged. */
  items: number;
  /** Transactions committed (a batch, or one item retried alone). */
  commits: number;
  /** Items written again alone because their batch's transaction failed. */
  retries: number;
}

interface Waiting<T, R> {
  readonly item: T;
  readonly resolve: (result: R) => void;
  readonly reject: (error: unknown) => void;
}

export class GroupCommit<T, R> {
  readonly stats: GroupCommitStats = { items: 0, commits: 0, retries: 0 };
  private queue: Waiting<T, R>[] = [];
  private timer: NodeJS.Immediate | null = null;
  private readonly writing = new Set<Promise<void>>();

  /**
   * @param write writes the items in one transaction and returns one result per item, in order;
   *   it throws when the transaction did not commit.
   */
  constructor(
    private readonly write: (items: readonly T[]) => Promise<R[]>,
    private readonly maxBatch: number,
  ) {}

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      // setImmediate runs after the I/O callbacks of this turn: every request that arrived with
      // this one has had its chance to join.
      if (this.queue.length >= this.maxBatch) this.flush();
      else this.timer ??= setImmediate(() => this.flush());
    });
  }

  /** Writes what is queued and waits for every batch in flight (for close()). */
  async drain(): Promise<void> {
    this.flush();
    await Promise.all(this.writing);
  }

  private flush(): void {
    if (this.timer !== null) clearImmediate(this.timer);
    this.timer = null;
    const batch = this.queue;
    if (batch.length === 0) return;
    this.queue = [];
    const written: Promise<void> = this.commit(batch).finally(() => this.writing.delete(written));
    this.writing.add(written);
  }

  /** Never rejects: every failure goes to the callers it belongs to. */
  private async commit(batch: readonly Waiting<T, R>[]): Promise<void> {
    let results: R[];
    try {
      results = await this.write(batch.map((w) => w.item));
    } catch (error) {
      if (batch.length === 1) return batch[0].reject(error);
      // One bad item aborts the whole transaction; alone, each item meets only its own fate.
      // In order, so that two items with one idempotency key still replay rather than race.
      // A commit whose outcome is unknown (the connection died during COMMIT) is retried too:
      // an item with an idempotency key is then replayed, one without may be stored twice.
      this.stats.retries += batch.length;
      for (const waiting of batch) await this.commit([waiting]);
      return;
    }
    this.stats.commits++;
    this.stats.items += batch.length;
    batch.forEach((w, i) => w.resolve(results[i]));
  }
}
