/**
 * src/util/file-hasher.ts: SHA-256 of files on a worker thread — the same digest as node:crypto's
 * in this thread, the read's own error, requests in parallel, and a process that is free to exit
 * when the hasher is idle.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { FileHasher } from '../../src/util/file-hasher.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'hb-hasher-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('FileHasher', () => {
  it('hashes files as node:crypto does, several at once, and says why one cannot be read', async () => {
    const h = new FileHasher();
    try {
      const files = [0, 1, 1 << 20, (3 << 20) + 7].map((n, i) => {
        const data = randomBytes(n);
        const f = path.join(dir, `f${i}`);
        writeFileSync(f, data);
        return { f, data };
      });
      const got = await Promise.all(files.map((x) => h.hash(x.f)));
      expect(got).toEqual(files.map((x) => ({ sha256: sha(x.data), bytes: x.data.length })));
      await expect(h.hash(path.join(dir, 'absent'))).rejects.toMatchObject({ code: 'ENOENT' });
      // Still usable after a failed read.
      expect((await h.hash(files[1]!.f)).sha256).toBe(sha(files[1]!.data));
    } finally {
      await h.close();
    }
  });

  it('an idle hasher never keeps the process alive', async () => {
    const f = path.join(dir, 'x');
    writeFileSync(f, 'abc');
    const mod = path.resolve('dist/src/util/file-hasher.js');
    const t0 = Date.now();
    const r = await execa('node', ['--input-type=module', '-e', `const { FileHasher } = await import(${JSON.stringify(mod)}); console.log((await new FileHasher().hash(${JSON.stringify(f)})).sha256);`], { timeout: 20_000 });
    expect(r.stdout).toBe(sha(Buffer.from('abc')));
    // It exits right after its last line, not after the worker's idle time (5 s) or the timeout.
    expect(Date.now() - t0).toBeLessThan(4_500);
  });
});
