// The error a description parser throws, for tests that check its file, path and problem.
import { InvalidDescriptionError } from '../core/errors.js';

export function descriptionError(parse: () => unknown): InvalidDescriptionError {
  try {
    parse();
  } catch (error) {
    if (error instanceof InvalidDescriptionError) return error;
    throw error;
  }
  throw new Error('expected an InvalidDescriptionError');
}
