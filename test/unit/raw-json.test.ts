import { describe, expect, it } from 'vitest';
import { BackupList } from '../../src/commands/ledger-commands.js';
import { RawJson, serializeWithRaw } from '../../src/util/raw-json.js';

const join = (parts: Array<string | Buffer>) => parts.map((p) => (typeof p === 'string' ? p : p.toString('utf8'))).join('');

describe('serializeWithRaw', () => {
  it('writes pre-serialised JSON in place, as bytes, and everything else as JSON.stringify would', () => {
    const raw = new RawJson(Buffer.from('[{"id":1,"d":"ünï \\"q\\""},{"id":2}]'));
    const doc = { type: 'result', ok: true, data: { backups: raw, total: 2, note: '"looks:0" like a marker' } };
    const parts = serializeWithRaw(doc);
    expect(parts).toContain(raw.bytes);
    expect(JSON.parse(join(parts))).toEqual({ ...doc, data: { ...doc.data, backups: [{ id: 1, d: 'ünï "q"' }, { id: 2 }] } });
    expect(serializeWithRaw({ a: [1, 'two'] })).toEqual(['{"a":[1,"two"]}']);
  });

  it('sends a document with a wire form in it, the same JSON value as the document read in-process', () => {
    const bytes = Buffer.from(JSON.stringify([{ id: 2, description: 'é' }, { id: 1, description: null }]));
    const list = new BackupList(bytes, 7);
    const reply = { type: 'result', ok: true, exitCode: 0, doc: list };
    const parts = serializeWithRaw(reply);
    // sending never parsed the bytes (a 5 MB list is not parsed and re-serialised per request)
    expect((list as unknown as { parsed: unknown }).parsed).toBeUndefined();
    // the cached bytes themselves, not a copy
    expect(parts.some((p) => p === bytes)).toBe(true);
    expect(JSON.parse(join(parts))).toEqual(JSON.parse(JSON.stringify(reply)));
    expect(list.backups.map((b) => b.id)).toEqual([2, 1]);
    expect(JSON.parse(JSON.stringify(list))).toEqual({ backups: [{ id: 2, description: 'é' }, { id: 1, description: null }], total: 7 });
  });
});
