// Group commit with a writer that records its batches: who is batched with whom, and that one
// bad item costs only its own caller.
import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/store/group-commit.js';

function recorder(failOn: (n: number) => boolean = () => false) {
  const batches: number[][] = [];
  const write = async (items: readonly number[]) => {
    batches.push([...items]);
    if (items.some(failOn)) throw new Error(`bad item among ${items.join(',')}`);
    return items.map((n) => n * 10);
  };
  return { batches, write };
}

describe('GroupCommit', () => {
  it('writes the calls of one turn together and later calls in the next batch', async () => {
    const { batches, write } = recorder();
    const group = new GroupCommit(write, 100);
    const first = await Promise.all([1, 2, 3].map((n) => group.add(n)));
    const second = await Promise.all([4, 5].map((n) => group.add(n)));
    expect([first, second]).toEqual([
      [10, 20, 30],
      [40, 50],
    ]);
    expect(batches).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
    expect(group.stats).toEqual({ items: 5, commits: 2, retries: 0 });
  });

  it('starts a batch as soon as it is full', async () => {
    const { batches, write } = recorder();
    const group = new GroupCommit(write, 2);
    await Promise.all([1, 2, 3, 4, 5].map((n) => group.add(n)));
    expect(batches).toEqual([[1, 2], [3, 4], [5]]);
  });

  it('retries each item of a failed batch alone, in order, so only the bad one fails', async () => {
    const { batches, write } = recorder((n) => n === 2);
    const group = new GroupCommit(write, 100);
    const results = await Promise.allSettled([1, 2, 3].map((n) => group.add(n)));
    expect(results).toEqual([
      { status: 'fulfilled', value: 10 },
      { status: 'rejected', reason: new Error('bad item among 2') },
      { status: 'fulfilled', value: 30 },
    ]);
    expect(batches).toEqual([[1, 2, 3], [1], [2], [3]]);
    expect(group.stats).toEqual({ items: 2, commits: 2, retries: 3 });
  });

  it('drain() writes what is queued and waits for it', async () => {
    const { batches, write } = recorder();
    const group = new GroupCommit(write, 100);
    const pending = group.add(7);
    await group.drain();
    expect(batches).toEqual([[7]]);
    await expect(pending).resolves.toBe(70);
  });
});
