// Errors are small named classes that say when they are thrown and carry the key field.

/** A site or consortium description is wrong: names the file, the path inside it and the problem. */
export class InvalidDescriptionError extends Error {
  override readonly name = 'InvalidDescriptionError';
  constructor(
    readonly file: string,
    readonly path: string,
    readonly problem: string,
  ) {
    super(`${file}: ${path || '(top level)'}: ${problem}`);
  }
}

/** A job refers to something the snapshot does not know (a bug in the caller, not user input). */
export class UnknownReferenceError extends Error {
  override readonly name = 'UnknownReferenceError';
  constructor(
    readonly kind: 'member' | 'zone' | 'node' | 'job',
    readonly ref: string,
    readonly where: string,
  ) {
    super(`${where}: unknown ${kind} '${ref}'`);
  }
}
