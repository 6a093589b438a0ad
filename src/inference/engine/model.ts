// A word-level Markov model: the next token is drawn from the tokens that followed the last two
// in the corpus (falling back to the last one, then to a sentence start). It is a toy, but it
// really generates text from what it read, on the CPU, in microseconds per token, which is what
// an end-to-end path without a GPU needs. Tokens are the shared tokenizer's, so every piece the
// engine emits is exactly one token for the gateway too.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { splitTokens } from '../tokens.js';

export const DEFAULT_CORPUS_DIR = new URL('../../../data/corpus/', import.meta.url).pathname;

/** The followers seen after a context, with how often each was seen. */
interface Followers {
  readonly ids: Int32Array;
  readonly counts: Float64Array;
  readonly total: number;
}

export interface MarkovModel {
  /** Token text by id, as first seen in the corpus. */
  readonly vocab: readonly string[];
  /** Ids of tokens that begin a sentence: where the chain starts when the prompt gives no context. */
  readonly starts: Int32Array;
  readonly bigram: ReadonlyMap<string, Followers>;
  readonly unigram: ReadonlyMap<string, Followers>;
}

/** A seeded generator (mulberry32): the same seed gives the same text, in every process. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SENTENCE_END = new Set(['.', '!', '?']);

function freeze(m: Map<string, Map<number, number>>): Map<string, Followers> {
  const out = new Map<string, Followers>();
  for (const [key, next] of m) {
    const ids = new Int32Array(next.size);
    const counts = new Float64Array(next.size);
    let i = 0;
    let total = 0;
    for (const [id, c] of next) {
      ids[i] = id;
      counts[i++] = c;
      total += c;
    }
    out.set(key, { ids, counts, total });
  }
  return out;
}

/** Builds the model from texts; contexts are case-folded so a prompt's "Liberty" finds "liberty". */
export function buildModel(texts: readonly string[]): MarkovModel {
  const vocab: string[] = [];
  const ids = new Map<string, number>();
  const bigram = new Map<string, Map<number, number>>();
  const unigram = new Map<string, Map<number, number>>();
  const starts: number[] = [];
  const add = (m: Map<string, Map<number, number>>, key: string, id: number) => {
    let next = m.get(key);
    if (!next) m.set(key, (next = new Map()));
    next.set(id, (next.get(id) ?? 0) + 1);
  };
  for (const text of texts) {
    let prev2 = '';
    let prev1 = '';
    let atStart = true;
    for (const tok of splitTokens(text)) {
      let id = ids.get(tok);
      if (id === undefined) {
        id = vocab.length;
        vocab.push(tok);
        ids.set(tok, id);
      }
      const folded = tok.toLowerCase();
      if (atStart && /^\p{Lu}/u.test(tok)) starts.push(id);
      if (prev1) add(unigram, prev1, id);
      if (prev2) add(bigram, `${prev2} ${prev1}`, id);
      prev2 = prev1;
      prev1 = folded;
      atStart = SENTENCE_END.has(tok);
    }
  }
  if (vocab.length === 0 || starts.length === 0) throw new Error('the corpus holds no sentences to learn from');
  return { vocab, starts: Int32Array.from(starts), bigram: freeze(bigram), unigram: freeze(unigram) };
}

let cached: MarkovModel | undefined;

/** The model of the bundled corpus (every `.txt` in data/corpus), built once per process. */
export function corpusModel(dir = DEFAULT_CORPUS_DIR): MarkovModel {
  if (dir === DEFAULT_CORPUS_DIR && cached) return cached;
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort();
  const model = buildModel(files.map((f) => readFileSync(join(dir, f), 'utf8')));
  if (dir === DEFAULT_CORPUS_DIR) cached = model;
  return model;
}

/**
 * Draws one follower. Temperature reshapes the corpus counts (weight = count^(1/T)): 1 samples as
 * the corpus does, below 1 favours the common continuation, 0 always takes it (greedy).
 */
function draw(f: Followers, temperature: number, random: () => number): number {
  if (f.ids.length === 1) return f.ids[0];
  if (temperature <= 0) {
    let best = 0;
    for (let i = 1; i < f.ids.length; i++) if (f.counts[i] > f.counts[best]) best = i;
    return f.ids[best];
  }
  const exp = 1 / temperature;
  let total = f.total;
  if (exp !== 1) {
    total = 0;
    for (let i = 0; i < f.counts.length; i++) total += f.counts[i] ** exp;
  }
  let r = random() * total;
  for (let i = 0; i < f.ids.length; i++) {
    r -= exp === 1 ? f.counts[i] : f.counts[i] ** exp;
    if (r < 0) return f.ids[i];
  }
  return f.ids[f.ids.length - 1];
}

// The shared tokenizer never joins across a non-word character, so "don" + "'" + "t" reads back
// as the three tokens it was drawn as, and can be written without the space.
const NO_SPACE_AFTER = new Set(['(', '[', '"', '“', '-', "'", '’']);
const OPENERS = new Set(['(', '[', '“']);

/**
 * How a token is written after the text so far. A word always gets a space before it (unless it
 * opens the text or follows an opening bracket or quote) so that two words never run together into
 * one token; punctuation sticks to the word before it. Concatenated pieces therefore re-tokenize
 * to exactly the tokens drawn.
 */
export function piece(tok: string, prev: string | undefined): string {
  if (prev === undefined || NO_SPACE_AFTER.has(prev)) return tok;
  if (/^[\p{L}\p{N}]/u.test(tok) || OPENERS.has(tok)) return ` ${tok}`;
  return tok;
}

export interface GenerateOptions {
  /** The text whose last tokens seed the chain when the corpus knows them. */
  readonly context: string;
  readonly maxTokens: number;
  readonly temperature: number;
  readonly random: () => number;
  /**
   * End at the first sentence end once this many tokens are out (a natural stop, finish_reason
   * `stop`); Infinity runs to maxTokens.
   */
  readonly minTokens: number;
  /** The text continues the context (a completion): the first piece is spaced after the context's last token. */
  readonly continues?: boolean;
}

/** The generated pieces (one token each) and whether the text ended on its own rather than at maxTokens. */
export function generate(model: MarkovModel, o: GenerateOptions): { pieces: string[]; natural: boolean } {
  const ctx = splitTokens(o.context.length > 400 ? o.context.slice(-400) : o.context);
  let prev2 = ctx.length > 1 ? ctx[ctx.length - 2].toLowerCase() : '';
  let prev1 = ctx.length > 0 ? ctx[ctx.length - 1].toLowerCase() : '';
  const pieces: string[] = [];
  let last: string | undefined = o.continues && ctx.length > 0 ? ctx[ctx.length - 1] : undefined;
  for (let n = 0; n < o.maxTokens; n++) {
    const f = model.bigram.get(`${prev2} ${prev1}`) ?? model.unigram.get(prev1);
    const id = f ? draw(f, o.temperature, o.random) : model.starts[Math.floor(o.random() * model.starts.length)];
    const tok = model.vocab[id];
    pieces.push(piece(tok, last));
    last = tok;
    prev2 = prev1;
    prev1 = tok.toLowerCase();
    if (SENTENCE_END.has(tok) && pieces.length >= o.minTokens) return { pieces, natural: true };
  }
  return { pieces, natural: false };
}
