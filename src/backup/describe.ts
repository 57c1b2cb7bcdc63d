/**
 * What a backup says about itself before and after it is taken — its description's rules, the
 * warning for an empty dump — kept apart from taking it, so that the command line can check them
 * without loading the dump machinery.
 */
import { HbError } from '../domain/errors.js';

export const MAX_DESCRIPTION = 500;

/**
 * Checks a description: 1–500 characters, not only whitespace. Returned exactly as given.
 * @throws HbError `description-invalid`
 */
export function validateDescription(description: string | null | undefined, required: boolean): string | null {
  if (description === undefined || description === null) {
    if (required) throw new HbError('description-invalid', 'a pre-change backup needs a description', 'say what is about to change, e.g. npm run backup:pre-change "Add orders.discount column"');
    return null;
  }
  const chars = [...description].length;
  if (description.trim() === '') {
    throw new HbError('description-invalid', 'the description is empty', 'say what is about to change, in 1 to 500 characters');
  }
  if (chars > MAX_DESCRIPTION) {
    throw new HbError('description-invalid', `the description is ${chars} characters long, more than ${MAX_DESCRIPTION}`, 'shorten it to at most 500 characters');
  }
  return description;
}

/** What a backup whose dump holds no user table says, wherever it is shown. */
export function emptyDumpWarning(database: string | null, source?: string): string {
  return `the dump holds no user table: database "${database ?? '?'}"${source ? ` (${source})` : ''} is empty. Is DATABASE_URL the database you mean to protect?`;
}
