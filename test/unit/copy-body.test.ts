/**
 * src/offsite/copy-body.ts: a backup file pulled as its offsite copy's body — the file's own bytes,
 * or an age file Debian's `age -d` turns back into exactly the file — whatever the sizes of the
 * buffers it is pulled into, and never the end of a file that does not match its record.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { AGE_CHUNK_SIZE, encryptedSize } from '../../src/crypto/age.js';
import { HbError } from '../../src/domain/errors.js';
import { FileCopyBody } from '../../src/offsite/copy-body.js';
import { ageKey } from '../helpers/age.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'hb-copy-body-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const key = ageKey(dir, 'key.txt');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const BLOCK = 16 * AGE_CHUNK_SIZE;

let n = 0;
function file(data: Buffer): string {
  const f = path.join(dir, `f${n++}.sql`);
  writeFileSync(f, data);
  return f;
}

/** Pulls `body` to its end into buffers of the given sizes, in turn. */
async function pull(body: FileCopyBody, sizes: readonly number[]): Promise<Buffer> {
  const out: Buffer[] = [];
  for (let i = 0; ; i++) {
    const into = Buffer.alloc(sizes[i % sizes.length]!);
    const got = await body.read(into);
    if (got === 0) break;
    expect(got).toBeLessThanOrEqual(into.length);
    out.push(Buffer.from(into.subarray(0, got)));
  }
  // And at the end it stays at the end.
  expect(await body.read(Buffer.alloc(10))).toBe(0);
  await body.close();
  return Buffer.concat(out);
}

async function ageDecrypt(data: Buffer): Promise<Buffer> {
  const r = await execa('age', ['-d', '-i', key.file], { input: data, encoding: 'buffer', stripFinalNewline: false });
  return Buffer.from(r.stdout);
}

const SIZES = [0, 1, AGE_CHUNK_SIZE, AGE_CHUNK_SIZE + 1, BLOCK, BLOCK + AGE_CHUNK_SIZE, 3 * BLOCK + 12_345];
const INTO = [[8 * 1024 * 1024], [7, 65_552, 100_000], [AGE_CHUNK_SIZE + 16]] as const;

describe('FileCopyBody', () => {
  for (const size of SIZES) {
    it(`${size} bytes: the file's own bytes, and an age file that age -d opens to exactly the file`, async () => {
      const data = randomBytes(size);
      const f = file(data);
      const record = { sha256: sha(data), bytes: size };
      for (const into of INTO) {
        const plain = new FileCopyBody(f, record, null);
        const same = await pull(plain, into);
        expect(same.equals(data)).toBe(true);
        expect(plain.digest()).toBe(record.sha256);

        const enc = new FileCopyBody(f, record, [key.recipient]);
        const stored = await pull(enc, into);
        expect(stored.length).toBe(encryptedSize(size, 1));
        expect(enc.digest()).toBe(sha(stored));
        expect(enc.bytes).toBe(stored.length);
        expect((await ageDecrypt(stored)).equals(data)).toBe(true);
      }
    });
  }

  it('a file that no longer matches its record: checksum-mismatch, and its last block never handed out', async () => {
    const data = randomBytes(2 * BLOCK + 5000);
    const f = file(data);
    const cases = [
      { what: 'a changed byte', record: { sha256: sha(Buffer.concat([data.subarray(0, 10), Buffer.from([data[10]! ^ 1]), data.subarray(11)])), bytes: data.length } },
      { what: 'longer than recorded', record: { sha256: sha(data.subarray(0, BLOCK)), bytes: BLOCK } },
      { what: 'shorter than recorded', record: { sha256: sha(data), bytes: data.length + 1 } },
    ];
    for (const c of cases) {
      for (const recipients of [null, [key.recipient]]) {
        const body = new FileCopyBody(f, c.record, recipients);
        let handed = 0;
        const e = await (async () => {
          for (;;) {
            const got = await body.read(Buffer.alloc(256 * 1024));
            if (got === 0) return null;
            handed += got;
          }
        })().catch((x: unknown) => x);
        await body.close();
        expect(e, c.what).toBeInstanceOf(HbError);
        expect((e as HbError).code, c.what).toBe('checksum-mismatch');
        expect((e as HbError).message).toContain(f);
        // Everything before the file's last block, at most: never a whole copy.
        expect(handed, c.what).toBeLessThanOrEqual(2 * BLOCK + (recipients ? 1000 + 32 * 16 : 0));
        // And a read after the failure fails the same way: the unchecked block never goes out.
        await expect(body.read(Buffer.alloc(256 * 1024))).rejects.toBe(e);
      }
    }
  });

  it('a missing file rejects the first read; a closed body rejects reads', async () => {
    const gone = new FileCopyBody(path.join(dir, 'absent.sql'), { sha256: sha(Buffer.alloc(0)), bytes: 0 }, null);
    await expect(gone.read(Buffer.alloc(10))).rejects.toMatchObject({ code: 'ENOENT' });
    await gone.close();
    const f = file(Buffer.from('abc'));
    const body = new FileCopyBody(f, { sha256: sha(Buffer.from('abc')), bytes: 3 }, null);
    await body.close();
    await body.close();
    await expect(body.read(Buffer.alloc(10))).rejects.toThrow(/closed/);
  });

  it('a recipient that is not an age key is config-invalid at once', () => {
    expect(() => new FileCopyBody(path.join(dir, 'x'), { sha256: '', bytes: 0 }, ['age1notakey'])).toThrow(HbError);
  });
});
