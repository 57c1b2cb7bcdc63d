/**
 * JSON that is already serialised (by SQLite, or a cache), carried inside a document and spliced
 * into the output verbatim instead of being parsed and serialised again.
 */
import { randomBytes } from 'node:crypto';

export class RawJson {
  constructor(readonly json: string) {}
}

/** `JSON.stringify`, except that each {@link RawJson} in `value` is written as its text. */
export function stringifyWithRaw(value: unknown): string {
  const raws: string[] = [];
  const nonce = randomBytes(8).toString('hex');
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof RawJson) {
      raws.push(v.json);
      return `${nonce}:${raws.length - 1}`;
    }
    return v;
  });
  if (raws.length === 0) return text;
  return text.replace(new RegExp(`"${nonce}:(\\d+)"`, 'g'), (_m, i: string) => raws[Number(i)]!);
}
