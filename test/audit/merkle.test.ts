// RFC 6962 trees: the incremental tree agrees with the definition, every proof it makes checks
// out, and a proof for another leaf, another root or another size does not.
//
// Reproduce a property failure with the seed fast-check prints: FC_SEED=<seed> npx vitest run test/audit.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EMPTY_ROOT, MerkleTree, leafHash, nodeHash, verifyConsistency, verifyInclusion } from '../../src/audit/merkle.js';

const seed = process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {};

/** MTH straight from RFC 6962 §2.1: the reference the tree is checked against. */
function mth(leaves: readonly Buffer[]): Buffer {
  if (leaves.length === 0) return EMPTY_ROOT;
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

const leaves = (n: number) => Array.from({ length: n }, (_, i) => leafHash(`event ${i}`));

function treeOf(hashes: readonly Buffer[]): MerkleTree {
  const tree = new MerkleTree();
  for (const h of hashes) tree.append(h);
  return tree;
}

describe('RFC 6962 Merkle tree', () => {
  it('hashes with the leaf and node prefixes of RFC 6962 (known answers)', () => {
    // The empty tree and a one-leaf tree of the empty string, as in Certificate Transparency's test vectors.
    expect(EMPTY_ROOT.toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(leafHash('').toString('hex')).toBe('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
  });

  it('gives the root of every prefix as the definition does', () => {
    const all = leaves(70);
    const tree = treeOf(all);
    for (let n = 0; n <= all.length; n++) expect(tree.root(n).equals(mth(all.slice(0, n)))).toBe(true);
  });

  it('property: every inclusion proof verifies, and fails for a wrong leaf, index, path or root', () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 1, max: 300 })
          .chain((size) => fc.record({ size: fc.constant(size), extra: fc.nat(40), index: fc.nat(size - 1) })),
        ({ size, extra, index }) => {
          const all = leaves(size + extra);
          const tree = treeOf(all);
          const root = mth(all.slice(0, size));
          const proof = tree.inclusionProof(index, size);
          expect(verifyInclusion(index, size, all[index], proof, root)).toBe(true);
          expect(verifyInclusion(index, size, leafHash('forged'), proof, root)).toBe(false);
          expect(verifyInclusion(index, size, all[index], proof, leafHash('another root'))).toBe(false);
          if (size > 1) expect(verifyInclusion((index + 1) % size, size, all[index], proof, root)).toBe(false);
          // A size is not bound by the hashes alone (a proof may fit a larger tree of the same shape): the
          // signed checkpoint binds the size to its root.
          if (proof.length > 0) {
            const bent = proof.map((p, i) => (i === proof.length - 1 ? leafHash('bent') : p));
            expect(verifyInclusion(index, size, all[index], bent, root)).toBe(false);
          }
        },
      ),
      { numRuns: 200, ...seed },
    );
  });

  it('property: every consistency proof verifies, and fails for a wrong or rewritten root', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }).chain((to) => fc.record({ to: fc.constant(to), from: fc.integer({ min: 1, max: to }) })),
        ({ from, to }) => {
          const all = leaves(to);
          const tree = treeOf(all);
          const [r1, r2] = [mth(all.slice(0, from)), mth(all)];
          const proof = tree.consistencyProof(from, to);
          expect(verifyConsistency(from, to, r1, r2, proof)).toBe(true);
          expect(verifyConsistency(from, to, leafHash('x'), r2, proof)).toBe(false);
          if (from < to) {
            expect(verifyConsistency(from, to, r1, leafHash('y'), proof)).toBe(false);
            // The old tree with one leaf changed: not a prefix of the new one.
            const changed = mth([...all.slice(0, from - 1), leafHash('changed')]);
            expect(verifyConsistency(from, to, changed, r2, proof)).toBe(false);
          }
        },
      ),
      { numRuns: 200, ...seed },
    );
  });

  it('refuses sizes and indices outside the tree with the numbers', () => {
    const tree = treeOf(leaves(5));
    expect(() => tree.root(6)).toThrow(/tree size 6 is outside 0..5/);
    expect(() => tree.inclusionProof(5, 5)).toThrow(/leaf index 5/);
    expect(() => tree.consistencyProof(4, 3)).toThrow(/earlier tree size 4/);
    expect(tree.consistencyProof(0, 5)).toEqual([]);
    expect(verifyConsistency(0, 5, EMPTY_ROOT, tree.root(), [])).toBe(true);
    expect(verifyConsistency(3, 2, tree.root(3), tree.root(2), [])).toBe(false);
  });
});
