import { describe, expect, it } from 'vitest';
import { RawJson, serializeWithRaw } from '../../src/util/raw-json.js';

const join = (parts: Array<string | Buffer>) => parts.map((p) => (typeof p === 'string' ? p : p.toString('utf8'))).join('');

describe('serializeWithRaw', () => {
  it('writes pre-serialised JSON in place, as bytes, and everything else as JSON.stringify would', () => {
    const raw = new RawJson('[{"id":1,"d":"ünï \\"q\\""},{"id":2}]');
    const doc = { type: 'result', ok: true, data: { backups: raw, total: 2, note: '"looks:0" like a marker' } };
    const parts = serializeWithRaw(doc);
    expect(parts.some((p) => Buffer.isBuffer(p))).toBe(true);
    expect(JSON.parse(join(parts))).toEqual({ ...doc, data: { ...doc.data, backups: [{ id: 1, d: 'ünï "q"' }, { id: 2 }] } });
  });

  it('encodes the same cached text once, and a document without raw JSON is one string', () => {
    const text = JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ i })));
    const a = serializeWithRaw({ x: new RawJson(text) }).find((p) => Buffer.isBuffer(p));
    const b = serializeWithRaw({ y: new RawJson(text) }).find((p) => Buffer.isBuffer(p));
    expect(a).toBe(b);
    expect(serializeWithRaw({ a: [1, 'two'] })).toEqual(['{"a":[1,"two"]}']);
    // bytes already encoded are sent as they are
    const bytes = Buffer.from('[{"k":"é"}]');
    const parts = serializeWithRaw({ list: new RawJson(bytes) });
    expect(parts).toContain(bytes);
    expect(JSON.parse(join(parts))).toEqual({ list: [{ k: 'é' }] });
  });
});
