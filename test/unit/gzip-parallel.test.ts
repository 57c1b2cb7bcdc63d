/**
 * ParallelGzip: independent gzip members compressed on the thread pool, written in input order,
 * with bounded memory. The output is checked byte for byte against zlib compressing each block on
 * its own, and read back by Node's gunzip and by the real `gunzip`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gunzipSync, gzip, gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { type BlockCompressor, ParallelGzip } from '../../src/dump/gzip-parallel.js';
import { until } from '../helpers/wait.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'hb-pgz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Text that compresses like a dump does (repetitive, not random), `n` bytes. */
function sqlLike(n: number): Buffer {
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < n; i++) {
    const line = `${i}\tuser ${i % 977}\t${(i * 7919) % 100000}\t2024-01-${String((i % 28) + 1).padStart(2, '0')}\n`;
    parts.push(line);
    len += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}

/** Feeds `input` in chunks of `chunk` bytes through a ParallelGzip; returns what it wrote. */
async function compress(input: Buffer, opts: ConstructorParameters<typeof ParallelGzip>[0], chunk = 65536): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunk) pieces.push(input.subarray(i, i + chunk));
  const out: Buffer[] = [];
  await pipeline(
    Readable.from(pieces),
    new ParallelGzip(opts),
    new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

/** What the members must be: each block gzipped on its own, in order. */
function expected(input: Buffer, level: number, block: number): Buffer {
  if (input.length === 0) return gzipSync(input, { level });
  const members: Buffer[] = [];
  for (let i = 0; i < input.length; i += block) members.push(gzipSync(input.subarray(i, i + block), { level }));
  return Buffer.concat(members);
}

async function realGunzip(gz: Buffer, name: string): Promise<Buffer> {
  const file = path.join(dir, name);
  writeFileSync(file, gz);
  await execa('gunzip', ['-t', file]);
  return Buffer.from((await execa('gunzip', ['-c', file], { encoding: 'buffer', stripFinalNewline: false, maxBuffer: 1 << 30 })).stdout);
}

describe('ParallelGzip', () => {
  it('an empty input makes one empty member, a valid gzip file', async () => {
    const gz = await compress(Buffer.alloc(0), { level: 6 });
    expect(gz).toEqual(gzipSync(Buffer.alloc(0), { level: 6 }));
    expect(gunzipSync(gz).length).toBe(0);
    expect((await realGunzip(gz, 'empty.gz')).length).toBe(0);
  });

  it('an input smaller than a block is one member', async () => {
    const input = sqlLike(1000);
    const gz = await compress(input, { level: 6 });
    expect(gz).toEqual(gzipSync(input, { level: 6 }));
    expect(await realGunzip(gz, 'small.gz')).toEqual(input);
  });

  it('many blocks: one member each, in order, read whole by gunzip (Node and the real one)', async () => {
    const block = 64 * 1024;
    const input = sqlLike(40 * block + 12345);
    // chunks that straddle the block boundaries, and one larger than several blocks
    for (const chunk of [7777, 65536, 300_000]) {
      const gz = await compress(input, { level: 6, blockSize: block }, chunk);
      expect(gz.equals(expected(input, 6, block))).toBe(true);
      expect(gunzipSync(gz).equals(input)).toBe(true);
    }
    const gz = await compress(input, { level: 1, blockSize: block });
    expect(gz.equals(expected(input, 1, block))).toBe(true); // 41 members
    expect((await realGunzip(gz, 'many.gz')).equals(input)).toBe(true);
  });

  it('an input of exactly a multiple of the block size makes no empty last member', async () => {
    const block = 32 * 1024;
    const input = sqlLike(8 * block);
    const gz = await compress(input, { level: 6, blockSize: block });
    expect(gz.equals(expected(input, 6, block))).toBe(true); // 8 members
    expect(gz.equals(expected(input.subarray(0, 7 * block), 6, block))).toBe(false);
  });

  it('keeps the input order whatever order the blocks finish in', async () => {
    const block = 16 * 1024;
    const input = randomBytes(60 * block + 100);
    let running = 0;
    let most = 0;
    const slow: BlockCompressor = (buf, opts, cb) => {
      running++;
      most = Math.max(most, running);
      // compressed at once (the input must not be kept), handed back after a random delay
      gzip(buf, opts, (err, out) =>
        setTimeout(() => {
          running--;
          cb(err, out);
        }, Math.floor(Math.random() * 15)),
      );
    };
    const gz = await compress(input, { level: 6, blockSize: block, inFlight: 6, compress: slow }, 5000);
    expect(gz.equals(expected(input, 6, block))).toBe(true);
    expect(most).toBeGreaterThan(1); // blocks did overlap
    expect(most).toBeLessThanOrEqual(6);
  });

  it('a failing block fails the stream with its error', async () => {
    let n = 0;
    const failing: BlockCompressor = (buf, opts, cb) => {
      if (++n === 3) return setImmediate(() => cb(new Error('block 3 could not be compressed'), Buffer.alloc(0)));
      gzip(buf, opts, cb);
    };
    await expect(compress(sqlLike(10 * 4096), { level: 6, blockSize: 4096, compress: failing })).rejects.toThrow(/block 3 could not be compressed/);
  });

  it('memory is bounded: with nobody reading, it stops taking input after a few blocks', async () => {
    const block = 64 * 1024;
    let running = 0;
    let most = 0;
    const counting: BlockCompressor = (buf, opts, cb) => {
      running++;
      most = Math.max(most, running);
      gzip(buf, opts, (err, out) => {
        running--;
        cb(err, out);
      });
    };
    // random data: the members are as large as the blocks, so the readable side fills up
    const z = new ParallelGzip({ level: 1, blockSize: block, inFlight: 3, compress: counting });
    const chunk = randomBytes(block);
    let accepted = 0;
    // a writer that writes whenever it may (as a pipe does), a reader that never reads
    const pump = () => {
      while (z.write(chunk)) accepted += chunk.length;
      accepted += chunk.length;
    };
    z.on('drain', pump);
    pump();
    // Stalled: input is waiting, nothing is compressing, nobody reads — nothing can change any more.
    await until(() => running === 0 && z.writableNeedDrain && z.writableLength > 0 && z.readableLength > 0, 'the compressor to fill up and stop taking input');
    const MiB = 1024 * 1024;
    // what it holds: its writable buffer (1 MiB), the blocks queued, its readable buffer (1 MiB)
    expect(accepted).toBeLessThanOrEqual(2 * MiB + 6 * (block + 1024));
    expect(z.readableLength).toBeLessThanOrEqual(MiB + 4 * (block + 1024));
    expect(most).toBeLessThanOrEqual(3);
    // reading it all: everything written comes out whole
    z.off('drain', pump);
    const out: Buffer[] = [];
    const done = new Promise<void>((resolve, reject) => {
      z.on('data', (c: Buffer) => out.push(c));
      z.on('end', resolve);
      z.on('error', reject);
    });
    z.end();
    await done;
    const back = gunzipSync(Buffer.concat(out));
    expect(back.length).toBe(accepted);
  });
});
