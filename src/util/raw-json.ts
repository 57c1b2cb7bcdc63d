/**
 * JSON that is already serialised (by SQLite, or a cache), carried inside a document and spliced
 * into the output verbatim instead of being parsed and serialised again.
 */
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
  // Web Crypto's global, loaded on first use: the CLI, which only reads documents, never loads node:crypto for this.
  const nonce = Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString('hex');
  // Wire forms are put in place first: JSON.stringify would call a document's toJSON (which may
  // parse what the wire form sends as bytes) before a replacer could see the document.
  const text = JSON.stringify(withWireForms(value), (_key: string, v: unknown) => {
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

/** `value` with each {@link WireDocument} in it (in plain objects and arrays) replaced by its wire form. */
function withWireForms(value: unknown): unknown {
  if (hasWireForm(value)) return value.wireForm();
  if (Array.isArray(value)) return value.some(holdsWireForm) ? value.map(withWireForms) : value;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const entries = Object.entries(value);
    return entries.some(([, v]) => holdsWireForm(v)) ? Object.fromEntries(entries.map(([k, v]) => [k, withWireForms(v)])) : value;
  }
  return value;
}

/** Whether a wire form is in `value`, one level of objects down (where the socket's replies put documents). */
function holdsWireForm(value: unknown): boolean {
  if (hasWireForm(value)) return true;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) return Object.values(value).some(hasWireForm);
  return false;
}
