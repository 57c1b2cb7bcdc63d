/**
 * What every offsite target must do (src/offsite/target.ts), as one suite each implementation
 * runs against a real server: round trips of 0 B, 1 B and 10 MB with metadata; a 40 MB upload
 * that streams (the body is never pulled far ahead of what the server has received); list with
 * prefixes, nesting, unicode, spaces and LIKE wildcards; remove; absent objects; a wrong
 * credential (a clear message, no secret); an abort mid-upload (nothing new under the key); a
 * body that is not the size announced.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { HbError } from '../../src/domain/errors.js';
import type { OffsiteTarget, PullBody } from '../../src/offsite/target.js';

export interface TargetUnderTest {
  /** A target on a folder no other test uses. */
  target: OffsiteTarget;
  /** Removes what the test left. */
  cleanup(): Promise<void>;
  /** The same target with a wrong secret, and that secret (which no message may show). */
  withWrongSecret(): Promise<{ target: OffsiteTarget; secret: string }>;
  /** Request bytes the server has received so far (the bounded-memory check compares against it). */
  received(): number;
  /** The most body bytes the target may hold at once (its part buffers and stream buffers). */
  maxBuffered: number;
}

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** `data` as a stream of 64 KiB chunks. */
function bodyOf(data: Buffer): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += 64 * 1024) yield data.subarray(i, i + 64 * 1024);
    })(),
  );
}

/**
 * A body of `total` bytes made as it is read, counting how far it has been pulled. With `stall`,
 * it stops giving bytes once `stall.at` have been pulled (a source gone slow) and calls
 * `stall.then` once.
 */
class Generated extends Readable {
  pulled = 0;
  private stalled = false;
  private readonly hash = createHash('sha256');
  constructor(
    private readonly total: number,
    private readonly onPull?: (pulled: number) => void,
    private readonly stall?: { at: number; then: () => void },
  ) {
    super({ highWaterMark: 64 * 1024 });
  }
  override _read(): void {
    if (this.stall && this.pulled >= this.stall.at) {
      if (!this.stalled) this.stall.then();
      this.stalled = true;
      return;
    }
    if (this.pulled >= this.total) return void this.push(null);
    const chunk = randomBytes(Math.min(256 * 1024, this.total - this.pulled));
    this.pulled += chunk.length;
    this.hash.update(chunk);
    this.onPull?.(this.pulled);
    this.push(chunk);
  }
  digest(): string {
    return this.hash.digest('hex');
  }
}

/** `data` as a pulled body, giving at most `step` bytes a read. */
function pulled(data: Buffer, step: number): PullBody {
  let off = 0;
  return {
    read: async (into) => {
      const n = data.copy(into, 0, off, Math.min(data.length, off + step));
      off += n;
      return n;
    },
  };
}

/** A pulled body that gives `bytes` random bytes, then rejects with `error`. */
function failing(bytes: number, error: Error): PullBody {
  let off = 0;
  return {
    read: async (into) => {
      if (off >= bytes) throw error;
      const n = Math.min(into.length, bytes - off, MiB);
      randomBytes(n).copy(into);
      off += n;
      return n;
    },
  };
}

async function drain(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.from(c as Buffer));
  return Buffer.concat(parts);
}

async function keys(t: OffsiteTarget, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of t.list(prefix)) out.push(e.key);
  return out.sort();
}

async function rejection(p: Promise<unknown>): Promise<HbError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e, 'expected a rejection').toBeInstanceOf(HbError);
  return e as HbError;
}

/**
 * A TCP proxy to 127.0.0.1:`port` counting the bytes clients send through it. It runs in a
 * worker thread and reads eagerly (buffering what the server has not taken yet), so the count is
 * what has left the client, whatever this thread or the server is busy with: no socket buffer
 * of the kernel (which grows to 32 MiB on loopback when the reader is slow) sits between the
 * client and the count.
 */
export async function startCountingProxy(port: number): Promise<{ port: number; received(): number; stop(): Promise<void> }> {
  const counter = new SharedArrayBuffer(8);
  const count = new BigInt64Array(counter);
  const worker = new Worker(PROXY, { eval: true, workerData: { port, counter } });
  const listening = await new Promise<number>((resolve, reject) => {
    worker.once('message', (m: { port: number }) => resolve(m.port));
    worker.once('error', reject);
  });
  return {
    port: listening,
    received: () => Number(Atomics.load(count, 0)),
    stop: async () => {
      await worker.terminate();
    },
  };
}

const PROXY = `
const { workerData, parentPort } = require('node:worker_threads');
const net = require('node:net');
const count = new BigInt64Array(workerData.counter);
const server = net.createServer((client) => {
  const upstream = net.connect(workerData.port, '127.0.0.1');
  client.on('data', (d) => {
    Atomics.add(count, 0, BigInt(d.length));
    upstream.write(d);
  });
  upstream.pipe(client);
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('end', end).on('error', end).on('close', end);
  upstream.on('error', end).on('close', end);
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
`;

export function describeTarget(name: string, make: () => Promise<TargetUnderTest>): void {
  /** Runs `fn` with a fresh target, cleaning up after. */
  const withTarget = (fn: (t: TargetUnderTest) => Promise<void>) => async () => {
    const t = await make();
    try {
      await fn(t);
    } finally {
      await t.cleanup();
    }
  };

  describe(`offsite target: ${name}`, () => {
    it(
      'ensureReady accepts the bucket, and again',
      withTarget(async ({ target }) => {
        await target.ensureReady();
        await target.ensureReady(AbortSignal.timeout(30_000));
        expect(target.location('a/b.sql')).toMatch(/a\/b\.sql$/);
        expect(target.location()).toMatch(/\/$/);
      }),
    );

    for (const [label, size, announce] of [
      ['0 B', 0, true],
      ['1 B (size not announced)', 1, false],
      ['10 MB of random bytes', 10 * MiB, true],
    ] as const) {
      it(
        `put, stat and get round-trip ${label} with its metadata`,
        withTarget(async ({ target }) => {
          const data = randomBytes(size);
          const key = `rt/${randomUUID()}.bin`;
          let seen = -1;
          const put = await target.put(key, bodyOf(data), {
            contentType: 'application/octet-stream',
            metadata: { sha256: sha(data), bytes: String(size) },
            ...(announce ? { bytes: size } : {}),
            onBytes: (n) => (seen = n),
          });
          expect(put).toEqual({ bytes: size });
          if (size > 0) expect(seen).toBe(size);
          const st = await target.stat(key);
          expect(st).not.toBeNull();
          expect(st!.bytes).toBe(size);
          expect(st!.metadata).toMatchObject({ sha256: sha(data), bytes: String(size) });
          if (st!.lastModified !== null) expect(Math.abs(Date.parse(st!.lastModified) - Date.now())).toBeLessThan(10 * 60_000);
          const back = await drain(await target.get(key));
          expect(back.length).toBe(size);
          expect(sha(back)).toBe(sha(data));
        }),
      );
    }

    it(
      'a put replaces what was under the key, metadata included',
      withTarget(async ({ target }) => {
        const [v1, v2] = [randomBytes(3000), randomBytes(1234)];
        await target.put('same.bin', bodyOf(v1), { contentType: 'application/octet-stream', metadata: { sha256: sha(v1), version: '1' }, bytes: v1.length });
        await target.put('same.bin', bodyOf(v2), { contentType: 'application/octet-stream', metadata: { sha256: sha(v2), version: '2' }, bytes: v2.length });
        expect(await target.stat('same.bin')).toMatchObject({ bytes: 1234, metadata: { sha256: sha(v2), version: '2' } });
        expect(sha(await drain(await target.get('same.bin')))).toBe(sha(v2));
      }),
    );

    it(
      'a 40 MB upload streams: the body is never pulled far ahead of what the server has received',
      withTarget(async ({ target, received, maxBuffered }) => {
        const total = 40 * MiB;
        const base = received();
        let maxAhead = 0;
        const body = new Generated(total, (pulled) => (maxAhead = Math.max(maxAhead, pulled - (received() - base))));
        const rss0 = process.memoryUsage().rss;
        let rssPeak = rss0;
        const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 20);
        try {
          const put = await target.put('big/forty.bin', body, { contentType: 'application/octet-stream', metadata: { bytes: String(total) }, bytes: total });
          expect(put.bytes).toBe(total);
        } finally {
          clearInterval(sampler);
        }
        const digest = body.digest();
        // Bounded: what was read but not yet sent never exceeds the target's buffers (and never the whole body).
        expect(maxAhead, `pulled up to ${(maxAhead / MiB).toFixed(1)} MiB ahead of the server`).toBeLessThanOrEqual(maxBuffered);
        expect(maxAhead).toBeLessThan(total / 2);
        expect(received() - base).toBeGreaterThanOrEqual(total);
        console.log(`${name}: 40 MiB upload, at most ${(maxAhead / MiB).toFixed(1)} MiB ahead of the server, RSS +${((rssPeak - rss0) / MiB).toFixed(0)} MiB`);
        expect(sha(await drain(await target.get('big/forty.bin')))).toBe(digest);
      }),
    );

    it(
      'list: a plain prefix at any depth, exactly (case, LIKE wildcards), with unicode, spaces and odd characters',
      withTarget(async ({ target }) => {
        const all = [
          'l/a.txt',
          'l/sub/b.txt',
          'l/sub/deeper/c d.txt',
          'l/subway.txt',
          'l/ünïcødé/ü ß 東京.txt',
          'l/UPPER.txt',
          'l/x_y.txt',
          'l/xay.txt',
          "l/odd *?#%+&=;:,@$!'() ~.txt",
          'l2/outside.txt',
        ];
        for (const [i, k] of all.entries()) {
          const data = Buffer.alloc(i + 1, i);
          await target.put(k, bodyOf(data), { contentType: 'text/plain', metadata: {}, bytes: data.length });
        }
        const entries: Array<{ key: string; bytes: number; lastModified: string | null }> = [];
        for await (const e of target.list('l/')) entries.push(e);
        expect(entries.map((e) => e.key).sort()).toEqual(all.filter((k) => k.startsWith('l/')).sort());
        for (const e of entries) expect(e.bytes).toBe(all.indexOf(e.key) + 1);
        expect(await keys(target, '')).toEqual([...all].sort());
        expect(await keys(target, 'l')).toEqual([...all].sort());
        expect(await keys(target, 'l/sub')).toEqual(['l/sub/b.txt', 'l/sub/deeper/c d.txt', 'l/subway.txt']);
        expect(await keys(target, 'l/sub/')).toEqual(['l/sub/b.txt', 'l/sub/deeper/c d.txt']);
        expect(await keys(target, 'l/x_')).toEqual(['l/x_y.txt']);
        expect(await keys(target, 'l/u')).toEqual([]);
        expect(await keys(target, 'l/U')).toEqual(['l/UPPER.txt']);
        expect(await keys(target, 'l/ü')).toEqual(['l/ünïcødé/ü ß 東京.txt']);
        expect(await keys(target, 'l/odd *?')).toEqual(["l/odd *?#%+&=;:,@$!'() ~.txt"]);
        expect(await keys(target, 'nothing/')).toEqual([]);
        // Each odd key round-trips through stat and get.
        for (const k of ['l/ünïcødé/ü ß 東京.txt', "l/odd *?#%+&=;:,@$!'() ~.txt", 'l/sub/deeper/c d.txt']) {
          expect((await target.stat(k))?.bytes).toBe(all.indexOf(k) + 1);
          expect((await drain(await target.get(k))).length).toBe(all.indexOf(k) + 1);
        }
      }),
    );

    it(
      'list pages through a folder of 130 objects',
      withTarget(async ({ target }) => {
        const want: string[] = [];
        for (let i = 0; i < 130; i++) {
          const k = `many/${String(i).padStart(3, '0')}.txt`;
          want.push(k);
          await target.put(k, bodyOf(Buffer.from(k)), { contentType: 'text/plain', metadata: {}, bytes: k.length });
        }
        expect(await keys(target, 'many/')).toEqual(want);
      }),
    );

    it(
      'remove: present and absent keys, and nothing at all',
      withTarget(async ({ target }) => {
        for (const k of ['r/1', 'r/2', 'r/keep']) await target.put(k, bodyOf(Buffer.from(k)), { contentType: 'text/plain', metadata: {}, bytes: k.length });
        await target.remove(['r/1', 'r/2', 'r/never-was', 'r/ünï absent']);
        await target.remove([]);
        await target.remove(['r/1']);
        expect(await target.stat('r/1')).toBeNull();
        expect(await target.stat('r/2')).toBeNull();
        expect(await keys(target, 'r/')).toEqual(['r/keep']);
      }),
    );

    it(
      'an absent object: stat is null, get is offsite-not-found naming where',
      withTarget(async ({ target }) => {
        expect(await target.stat('absent/x.sql')).toBeNull();
        const e = await rejection(target.get('absent/x.sql'));
        expect(e.code).toBe('offsite-not-found');
        expect(e.message).toContain(target.location('absent/x.sql'));
        expect(e.exitCode).toBe(1);
      }),
    );

    it(
      'a wrong credential: offsite-failed saying so, with a hint, and never the secret',
      withTarget(async ({ withWrongSecret }) => {
        const { target: bad, secret } = await withWrongSecret();
        const body = bodyOf(randomBytes(1000));
        const failures = [
          await rejection(bad.ensureReady()),
          await rejection(bad.put('w/x.bin', body, { contentType: 'application/octet-stream', metadata: {}, bytes: 1000 })),
          await rejection(bad.stat('w/x.bin')),
          await rejection(bad.get('w/x.bin')),
          await rejection(keys(bad, 'w/')),
          await rejection(bad.remove(['w/x.bin'])),
        ];
        expect(body.destroyed).toBe(true);
        for (const e of failures) {
          expect(e.code).toBe('offsite-failed');
          expect(e.message).toMatch(/refused/);
          expect(e.message).toMatch(/secret|key|signature|credential/i);
          expect(e.hint).toMatch(/check/);
          for (const text of [e.message, e.hint ?? '', JSON.stringify(e.toJSON()), String(e.stack)]) expect(text).not.toContain(secret);
        }
      }),
    );

    it(
      'an abort mid-upload: rejected as aborted, nothing new under the key, the older copy kept',
      withTarget(async ({ target }) => {
        const old = randomBytes(2048);
        await target.put('ab/kept.bin', bodyOf(old), { contentType: 'application/octet-stream', metadata: { sha256: sha(old) }, bytes: old.length });
        for (const key of ['ab/new.bin', 'ab/kept.bin']) {
          const ac = new AbortController();
          const reason = new DOMException('stopped by the test', 'TimeoutError');
          // 12 MiB sent (S3: two parts up, a multipart upload open), then the source stalls and the signal fires.
          const body = new Generated(40 * MiB, undefined, { at: 12 * MiB, then: () => setTimeout(() => ac.abort(reason), 100) });
          const e = await rejection(target.put(key, body, { contentType: 'application/octet-stream', metadata: {}, bytes: 40 * MiB, signal: ac.signal }));
          expect(e.code).toBe('aborted');
          expect(e.message).toMatch(/stopped before it finished/);
          expect(e.cause).toBe(reason);
          expect(body.destroyed).toBe(true);
          expect(body.pulled).toBeLessThan(40 * MiB);
        }
        expect(await target.stat('ab/new.bin')).toBeNull();
        expect(await keys(target, 'ab/')).toEqual(['ab/kept.bin']);
        expect(await target.stat('ab/kept.bin')).toMatchObject({ bytes: 2048, metadata: { sha256: sha(old) } });
        // Already aborted: nothing is sent.
        const body = bodyOf(Buffer.from('x'));
        expect((await rejection(target.put('ab/never.bin', body, { contentType: 'text/plain', metadata: {}, signal: AbortSignal.abort() }))).code).toBe('aborted');
        expect(await target.stat('ab/never.bin')).toBeNull();
      }),
    );

    it(
      'a body that is not the size announced: offsite-mismatch, nothing stored',
      withTarget(async ({ target }) => {
        const short = await rejection(target.put('mm/short.bin', bodyOf(randomBytes(50)), { contentType: 'application/octet-stream', metadata: {}, bytes: 100 }));
        expect(short.code).toBe('offsite-mismatch');
        expect(short.message).toMatch(/has only 50 bytes, not the 100 bytes announced/);
        const long = await rejection(target.put('mm/long.bin', bodyOf(randomBytes(6 * MiB)), { contentType: 'application/octet-stream', metadata: {}, bytes: 100 }));
        expect(long.code).toBe('offsite-mismatch');
        expect(await keys(target, 'mm/')).toEqual([]);
      }),
    );

    it(
      'a pulled body: the same object as a stream of its bytes, small or in parts; a wrong size, a failing read or an abort stores nothing',
      withTarget(async ({ target }) => {
        for (const size of [0, 100, 12 * MiB + 7]) {
          const data = randomBytes(size);
          // Reads of odd sizes, never more than asked, as a body may give them.
          const put = await target.put(`pb/${size}.bin`, pulled(data, 300_001), { contentType: 'application/octet-stream', metadata: { n: String(size) }, bytes: size });
          expect(put.bytes).toBe(size);
          expect(await target.stat(`pb/${size}.bin`)).toMatchObject({ bytes: size, metadata: { n: String(size) } });
          expect(sha(await drain(await target.get(`pb/${size}.bin`)))).toBe(sha(data));
        }
        const short = await rejection(target.put('pb/short.bin', pulled(randomBytes(50), 64), { contentType: 'application/octet-stream', metadata: {}, bytes: 100 }));
        expect(short.code).toBe('offsite-mismatch');
        expect(short.message).toMatch(/has only 50 bytes, not the 100 bytes announced/);
        const long = await rejection(target.put('pb/long.bin', pulled(randomBytes(6 * MiB), MiB), { contentType: 'application/octet-stream', metadata: {}, bytes: 100 }));
        expect(long.code).toBe('offsite-mismatch');
        // The body's own HbError is the put's; any other failure says the body could not be read.
        const own = new HbError('checksum-mismatch', 'the file no longer matches its record');
        expect(await rejection(target.put('pb/own.bin', failing(7 * MiB, own), { contentType: 'application/octet-stream', metadata: {}, bytes: 8 * MiB }))).toBe(own);
        const eio = await rejection(target.put('pb/eio.bin', failing(7 * MiB, Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' })), { contentType: 'application/octet-stream', metadata: {}, bytes: 8 * MiB }));
        expect(eio.code).toBe('offsite-failed');
        expect(eio.message).toMatch(/cannot read what was to be uploaded to .*pb\/eio\.bin: EIO/);
        // Stopped mid-way (the caller's signal fires after 7 MiB were read): aborted, nothing stored.
        const stop = new AbortController();
        const body = pulled(randomBytes(12 * MiB), MiB);
        let readSoFar = 0;
        const watched: PullBody = {
          read: async (into) => {
            const n = await body.read(into);
            if ((readSoFar += n) >= 7 * MiB) stop.abort();
            return n;
          },
        };
        expect((await rejection(target.put('pb/stopped.bin', watched, { contentType: 'application/octet-stream', metadata: {}, bytes: 12 * MiB, signal: stop.signal }))).code).toBe('aborted');
        expect((await keys(target, 'pb/')).sort()).toEqual(['pb/0.bin', 'pb/100.bin', `pb/${12 * MiB + 7}.bin`].sort());
      }),
    );

    it(
      'keys and metadata that break the rules are refused before anything is sent',
      withTarget(async ({ target }) => {
        for (const k of ['', '/abs', 'a//b', 'a/', 'a/../b', './a', 'tab\there']) {
          await expect(target.put(k, bodyOf(Buffer.from('x')), { contentType: 'text/plain', metadata: {} })).rejects.toThrow(TypeError);
          await expect(target.stat(k)).rejects.toThrow(TypeError);
        }
        await expect(target.put('ok', bodyOf(Buffer.from('x')), { contentType: 'text/plain', metadata: { 'Bad Key': 'x' } })).rejects.toThrow(TypeError);
        await expect(target.put('ok', bodyOf(Buffer.from('x')), { contentType: 'text/plain', metadata: { k: 'ünï' } })).rejects.toThrow(TypeError);
        expect(await target.stat('ok')).toBeNull();
      }),
    );
  });
}
