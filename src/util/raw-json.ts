/**
 * JSON that is already serialised (by SQLite, or a cache), carried inside a document and spliced
 * into the output verbatim instead of being parsed and serialised again.
 */
import { randomBytes } from 'node:crypto';

export class RawJson {
  /** `bytes`: the UTF-8 text of one JSON value. */
  constructor(readonly bytes: Buffer) {}
}

/**
 * A document with a wire form of its own: what the control socket sends in its place (its
 * `toJSON` is what everyone else sees). The two must be the same JSON value; the wire form may
 * hold {@link RawJson} where the document would be parsed and serialised again.
 */
export interface WireDocument {
  wireForm(): unknown;
}

const hasWireForm = (v: unknown): v is WireDocument => typeof (v as WireDocument | null)?.wireForm === 'function';

/**
 * `JSON.stringify(value)` as a list of pieces to write in order: the document's own text, with
 * each {@link WireDocument} in its wire form and each {@link RawJson} as its bytes.
 */
export function serializeWithRaw(value: unknown): Array<string | Buffer> {
  const raws: Buffer[] = [];
  const nonce = randomBytes(8).toString('hex');
  const text = JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    // the value before its toJSON ran
    const own = this[key];
    if (hasWireForm(own)) return own.wireForm();
    if (v instanceof RawJson) {
      raws.push(v.bytes);
      return `${nonce}:${raws.length - 1}`;
    }
    return v;
  });
  if (raws.length === 0) return [text];
  const parts: Array<string | Buffer> = [];
  const marker = new RegExp(`"${nonce}:(\\d+)"`, 'g');
  let at = 0;
  for (const m of text.matchAll(marker)) {
    parts.push(text.slice(at, m.index));
    parts.push(raws[Number(m[1])]!);
    at = m.index + m[0].length;
  }
  parts.push(text.slice(at));
  return parts;
}
