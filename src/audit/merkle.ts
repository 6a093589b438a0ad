// RFC 6962 Merkle trees: the hashing (§2.1), an append-only tree that answers for any of its
// prefixes, the proofs the log serves (PATH and PROOF, §2.1.1 and §2.1.2) and the checks a
// verifier runs (RFC 9162 §2.1.3.2 and §2.1.4.2). Only the tree is ours; SHA-256 is node:crypto.
//
// The tree keeps, per level k, the hash of every complete subtree of 2^k leaves (aligned on a
// multiple of 2^k), computed once when its last leaf arrives. The hash of any prefix, and of any
// subtree a proof needs, is then a right fold over at most log2(n) stored hashes: a proof costs
// O(log² n) lookups and hashes, never a pass over the leaves. Levels are flat buffers (32 bytes a
// hash): a million leaves hold about 64 MB, not two million Buffer objects.
import { createHash, hash, timingSafeEqual } from 'node:crypto';

export const HASH_BYTES = 32;
const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** MTH({d}) = SHA-256(0x00 ‖ d). One-shot hashing (crypto.hash): a fresh Hash object per leaf was a tenth of an append. */
export function leafHash(data: Uint8Array | string): Buffer {
  // A string is hashed as UTF-8, where U+0000 is the one byte 0x00.
  return typeof data === 'string'
    ? hash('sha256', '\u0000' + data, 'buffer')
    : hash('sha256', Buffer.concat([LEAF_PREFIX, data]), 'buffer');
}

/** SHA-256(0x01 ‖ left ‖ right). */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return hash('sha256', Buffer.concat([NODE_PREFIX, left, right]), 'buffer');
}

/** MTH({}) = SHA-256(): the root of the empty tree. */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

/** The largest power of two strictly below n (n ≥ 2): RFC 6962's k. */
function split(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

const isPowerOfTwo = (n: number) => n >= 1 && Number.isInteger(Math.log2(n));
// Arithmetic, not bit operators: those cut numbers to 32 bits, and a log may outgrow 2^31 leaves.
const odd = (n: number) => n % 2 === 1;
const half = (n: number) => Math.floor(n / 2);

/** Hashes of one level, back to back in one growing buffer. */
class Level {
  private buffer = Buffer.alloc(HASH_BYTES * 1024);
  length = 0;

  push(hash: Uint8Array): void {
    if ((this.length + 1) * HASH_BYTES > this.buffer.length) {
      const bigger = Buffer.alloc(this.buffer.length * 2);
      this.buffer.copy(bigger);
      this.buffer = bigger;
    }
    this.buffer.set(hash, this.length * HASH_BYTES);
    this.length++;
  }

  /** A view, not a copy: valid until the level grows. */
  get(i: number): Buffer {
    return this.buffer.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
  }
}

/** A size or index outside the tree: the caller's mistake, reported with the numbers. */
export class TreeRangeError extends RangeError {
  override readonly name = 'TreeRangeError';
}

export class MerkleTree {
  /** levels[k].get(i) = MTH(D[i·2^k : (i+1)·2^k]). */
  private readonly levels: Level[] = [new Level()];

  get size(): number {
    return this.levels[0].length;
  }

  /** Appends a leaf hash (leafHash(data)); returns its index. */
  append(leaf: Uint8Array): number {
    if (leaf.length !== HASH_BYTES) throw new TypeError(`a leaf hash has ${HASH_BYTES} bytes, not ${leaf.length}`);
    const index = this.size;
    this.levels[0].push(leaf);
    // A right child completes its parent, which may complete its own: carry upward.
    for (let i = index, k = 0; odd(i); i = half(i), k++) {
      const parent = nodeHash(this.levels[k].get(i - 1), this.levels[k].get(i));
      (this.levels[k + 1] ??= new Level()).push(parent);
    }
    return index;
  }

  leaf(index: number): Buffer {
    this.check(index, this.size - 1, 'leaf index');
    return Buffer.from(this.levels[0].get(index));
  }

  /** MTH(D[0:size]), for any size up to the tree's. */
  root(size: number = this.size): Buffer {
    this.check(size, this.size, 'tree size');
    return size === 0 ? Buffer.from(EMPTY_ROOT) : this.range(0, size);
  }

  /** PATH(index, D[0:size]): the audit path, leaf level first. */
  inclusionProof(index: number, size: number = this.size): Buffer[] {
    this.check(size, this.size, 'tree size');
    this.check(index, size - 1, 'leaf index');
    const proof: Buffer[] = [];
    // RFC 6962 recurses from the top and appends on the way back; walking down and reversing is the same list.
    let lo = 0;
    let hi = size;
    while (hi - lo > 1) {
      const k = split(hi - lo);
      if (index < lo + k) {
        proof.push(this.range(lo + k, hi));
        hi = lo + k;
      } else {
        proof.push(this.range(lo, lo + k));
        lo += k;
      }
    }
    return proof.reverse();
  }

  /** PROOF(from, D[0:to]): that the tree of `to` leaves extends the tree of `from` (0 < from ≤ to). */
  consistencyProof(from: number, to: number = this.size): Buffer[] {
    this.check(to, this.size, 'tree size');
    this.check(from, to, 'earlier tree size');
    if (from === 0 || from === to) return [];
    const proof: Buffer[] = [];
    // SUBPROOF(m, D[lo:hi], b), unrolled from the top as for the audit path.
    let m = from;
    let lo = 0;
    let hi = to;
    let whole = true;
    while (m !== hi - lo) {
      const k = split(hi - lo);
      if (m <= k) {
        proof.push(this.range(lo + k, hi));
        hi = lo + k;
      } else {
        proof.push(this.range(lo, lo + k));
        m -= k;
        lo += k;
        whole = false;
      }
    }
    if (!whole) proof.push(this.range(lo, hi));
    return proof.reverse();
  }

  /** MTH(D[lo:hi]) for a range that starts on a multiple of the power of two at or above its length. */
  private range(lo: number, hi: number): Buffer {
    const n = hi - lo;
    if (isPowerOfTwo(n)) return Buffer.from(this.levels[Math.log2(n)].get(lo / n));
    const k = split(n);
    return nodeHash(this.range(lo, lo + k), this.range(lo + k, hi));
  }

  private check(value: number, max: number, what: string): void {
    if (!Number.isSafeInteger(value) || value < 0 || value > max)
      throw new TreeRangeError(`${what} ${value} is outside 0..${max} (the tree has ${this.size} leaves)`);
  }
}

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && timingSafeEqual(a, b);

/** RFC 9162 §2.1.3.2: is `leaf` the leaf at `index` of the tree of `size` leaves whose root is `root`? */
export function verifyInclusion(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r: Uint8Array = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      r = nodeHash(p, r);
      if (!odd(fn)) while (!odd(fn) && fn !== 0) [fn, sn] = [half(fn), half(sn)];
    } else r = nodeHash(r, p);
    [fn, sn] = [half(fn), half(sn)];
  }
  return sn === 0 && same(r, root);
}

/** RFC 9162 §2.1.4.2: does the tree of `size2` leaves (root2) extend the tree of `size1` leaves (root1)? */
export function verifyConsistency(
  size1: number,
  size2: number,
  root1: Uint8Array,
  root2: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 0 || size1 > size2) return false;
  if (size1 === size2) return proof.length === 0 && same(root1, root2);
  // Every tree extends the empty one.
  if (size1 === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (odd(fn)) [fn, sn] = [half(fn), half(sn)];
  let fr: Uint8Array = path[0];
  let sr: Uint8Array = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!odd(fn)) while (!odd(fn) && fn !== 0) [fn, sn] = [half(fn), half(sn)];
    } else sr = nodeHash(sr, c);
    [fn, sn] = [half(fn), half(sn)];
  }
  return sn === 0 && same(fr, root1) && same(sr, root2);
}
