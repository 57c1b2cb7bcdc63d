/**
 * JSON that is already serialised (by SQLite, or a cache), carried inside a document and spliced
 * into the output verbatim instead of being parsed and serialised again.
 */
import { randomBytes } from 'node:crypto';

export class RawJson {
  /** `json`: the text, or its UTF-8 bytes. */
  constructor(readonly json: string | Buffer) {}
}

/** The last text encoded by {@link serializeWithRaw}: a cached list is sent again unchanged. */
let lastEncoded: { text: string; bytes: Buffer } | undefined;

function encoded(text: string): Buffer {
  if (lastEncoded?.text !== text) lastEncoded = { text, bytes: Buffer.from(text, 'utf8') };
  return lastEncoded.bytes;
}

/**
 * `JSON.stringify(value)` as a list of pieces to write in order: the document's own text, with
 * each {@link RawJson} in it as a Buffer of its text (the same text twice in a row is encoded once).
 */
export function serializeWithRaw(value: unknown): Array<string | Buffer> {
  const raws: Array<string | Buffer> = [];
  const nonce = randomBytes(8).toString('hex');
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof RawJson) {
      raws.push(v.json);
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
    const raw = raws[Number(m[1])]!;
    parts.push(typeof raw === 'string' ? encoded(raw) : raw);
    at = m.index + m[0].length;
  }
  parts.push(text.slice(at));
  return parts;
}
