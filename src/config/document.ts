// What the site and consortium loaders share: reading a YAML description, validating it
// against a zod schema, and failing with an InvalidDescriptionError that points into the
// document twice over: the path an operator sees in the data (`superpods[1].racks[0].zone`)
// and the line they open in their editor.
import { readFileSync } from 'node:fs';
import { isNode, LineCounter, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { InvalidDescriptionError } from '../core/errors.js';

/** A location inside a document: mapping keys and 0-based list indices. */
export type DocPath = readonly (string | number)[];

/** Names become node hostnames and path segments, so they stay plain. */
export const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
export const nameSchema = z
  .string()
  .regex(NAME, { error: 'must be a name made of letters, digits, - and _ (starting with a letter or digit)' });

/**
 * `z.strictObject` whose unknown-key issue lists the keys that are allowed there, because
 * a typo is the usual cause and the fix is to see the right spelling.
 */
export function strictObject<Shape extends z.core.$ZodLooseShape>(shape: Shape) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? `(allowed here: ${allowed})` : undefined),
  });
}

/** The text of a description file; a file that cannot be read is an invalid description. */
export function readDescriptionFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const problem =
      code === 'ENOENT'
        ? 'file not found'
        : code === 'EISDIR'
          ? 'is a directory, not a file'
          : `cannot be read: ${(error as Error).message}`;
    throw new InvalidDescriptionError(path, '', problem);
  }
}

/** One parsed YAML description that can point back into its own text. */
export class Description {
  private constructor(
    readonly file: string,
    readonly data: unknown,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  static parse(text: string, file: string): Description {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
    const syntax = doc.errors[0];
    if (syntax) {
      const { line, col } = lines.linePos(syntax.pos[0]);
      throw new InvalidDescriptionError(file, '', `YAML syntax error at line ${line}, column ${col}: ${syntax.message}`);
    }
    let data: unknown;
    try {
      data = doc.toJS();
    } catch (error) {
      // Alias misuse (unknown anchor, alias bombs) surfaces only when the document is built.
      throw new InvalidDescriptionError(file, '', `YAML error: ${(error as Error).message}`);
    }
    return new Description(file, data, doc, lines);
  }

  /** The data checked against `schema`; the issue that comes first in the text is reported. */
  validate<Schema extends z.ZodType>(schema: Schema): z.output<Schema> {
    const result = schema.safeParse(this.data);
    if (result.success) return result.data;
    // A required key that is missing beside an unknown key is most often that key misspelt:
    // report the misspelling, which is where the fix goes.
    const withUnknownKeys = new Set(
      result.error.issues.filter((i) => i.code === 'unrecognized_keys').map((i) => JSON.stringify(i.path)),
    );
    const issues = result.error.issues.filter(
      (i) => !(isMissing(i, this.data) && withUnknownKeys.has(JSON.stringify(i.path.slice(0, -1)))),
    );
    const located = issues.map((issue) => {
      const { path, problem } = this.describeIssue(issue);
      return { path, problem, line: this.lineOf(path) ?? Number.MAX_SAFE_INTEGER };
    });
    const first = located.reduce((a, b) => (b.line < a.line ? b : a));
    return this.fail(first.path, first.problem);
  }

  fail(path: DocPath, problem: string): never {
    const line = this.lineOf(path);
    throw new InvalidDescriptionError(this.file, formatPath(path), line === undefined ? problem : `${problem} (line ${line})`);
  }

  /** The line of the deepest node on `path` that exists: a missing key points at its parent. */
  private lineOf(path: DocPath): number | undefined {
    for (let depth = path.length; depth >= 0; depth--) {
      const node = depth === 0 ? this.doc.contents : this.doc.getIn(path.slice(0, depth), true);
      if (isNode(node) && node.range) return this.lines.linePos(node.range[0]).line;
    }
    return undefined;
  }

  private describeIssue(issue: z.core.$ZodIssue): { path: DocPath; problem: string } {
    const path = issue.path.map((segment) => (typeof segment === 'number' ? segment : String(segment)));
    const value = valueAt(this.data, path);
    switch (issue.code) {
      case 'unrecognized_keys': {
        const keys = issue.keys.map((k) => `'${k}'`).join(', ');
        const noun = issue.keys.length === 1 ? 'key' : 'keys';
        return { path: [...path, issue.keys[0]], problem: `unknown ${noun} ${keys} ${issue.message}` };
      }
      case 'invalid_type':
        if (path.length === 0 && value == null) return { path, problem: 'the document is empty' };
        if (value === undefined) return { path, problem: 'is required but missing' };
        return { path, problem: `expected ${typeWords(issue.expected)}, got ${show(value)}` };
      case 'invalid_value':
        return { path, problem: `expected one of ${issue.values.map(String).join(', ')}, got ${show(value)}` };
      case 'too_small':
        return { path, problem: boundWords(issue.origin, 'at least', 'more than', issue.minimum, issue.inclusive, value) };
      case 'too_big':
        return { path, problem: boundWords(issue.origin, 'at most', 'less than', issue.maximum, issue.inclusive, value) };
      case 'invalid_union':
      case 'invalid_format':
        return { path, problem: `${issue.message}, got ${show(value)}` };
      default:
        return { path, problem: issue.message };
    }
  }
}

/** Records that `name` is defined at `path`; a second definition is an error naming the first. */
export function claim(d: Description, seen: Map<string, DocPath>, name: string, path: DocPath, what: string): void {
  const first = seen.get(name);
  if (first !== undefined) d.fail(path, `${what} '${name}' is used twice (first at ${formatPath(first) || 'the top level'})`);
  seen.set(name, path);
}

/** `superpods[1].racks[0].zone`; keys that are not plain words are quoted. */
export function formatPath(path: DocPath): string {
  return path
    .map((segment, i) => {
      if (typeof segment === 'number') return `[${segment}]`;
      if (NAME.test(segment)) return i === 0 ? segment : `.${segment}`;
      return `[${JSON.stringify(segment)}]`;
    })
    .join('');
}

function isMissing(issue: z.core.$ZodIssue, data: unknown): boolean {
  return issue.code === 'invalid_type' && issue.path.length > 0 && valueAt(data, issue.path as DocPath) === undefined;
}

function valueAt(data: unknown, path: DocPath): unknown {
  let value = data;
  for (const segment of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string | number, unknown>)[segment];
  }
  return value;
}

function show(value: unknown): string {
  if (value === null) return 'nothing (an empty value)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `text "${value}"`;
  return String(value);
}

function typeWords(expected: string): string {
  const words: Record<string, string> = {
    int: 'a whole number',
    number: 'a number',
    string: 'text',
    boolean: 'true or false',
    object: 'a mapping (key: value)',
    record: 'a mapping (key: value)',
    array: 'a list',
  };
  return words[expected] ?? expected;
}

function boundWords(
  origin: string,
  inclusiveWord: string,
  exclusiveWord: string,
  bound: number | bigint,
  inclusive: boolean | undefined,
  value: unknown,
): string {
  if (origin === 'array' || origin === 'string') {
    if (inclusiveWord === 'at least' && Number(bound) === 1)
      return origin === 'array' ? 'must list at least one entry' : 'must not be empty';
    const unit = origin === 'array' ? 'entries' : 'characters';
    return `must have ${inclusive === false ? exclusiveWord : inclusiveWord} ${bound} ${unit}`;
  }
  return `must be ${inclusive === false ? exclusiveWord : inclusiveWord} ${bound}, got ${show(value)}`;
}
