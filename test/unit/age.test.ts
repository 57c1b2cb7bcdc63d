/**
 * src/crypto/age.ts against the real `age` command (Debian's, both ways), the C2SP CCTV age test
 * vectors (the `cctv-age` package: the X25519 ones, not armor, scrypt or post-quantum), and files
 * cut or damaged on purpose.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { inflateSync } from 'node:zlib';
import * as cctv from 'cctv-age';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AGE_CHUNK_SIZE,
  AgeDecryptError,
  type AgeDecryptReason,
  createDecryptStream,
  createEncryptStream,
  encryptedSize,
  generateIdentity,
  isAgeFile,
  parseIdentity,
  parseRecipient,
  readIdentityFile,
} from '../../src/crypto/age.js';
import { HbError } from '../../src/domain/errors.js';

const CHUNK = AGE_CHUNK_SIZE;
const SEALED = CHUNK + 16;
const SIZES = [0, 1, CHUNK, CHUNK + 1, 3 * 1024 * 1024 + 123];

/** Cuts `buf` into pieces of the given sizes, in turn: the streams must not care where writes split. */
function pieces(buf: Buffer, sizes: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0, i = 0; off < buf.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(buf.subarray(off, off + n));
    off += n;
  }
  return out;
}

async function run(input: Buffer[], transform: NodeJS.ReadWriteStream): Promise<{ out: Buffer; error: unknown }> {
  const got: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, cb) {
      got.push(chunk);
      cb();
    },
  });
  let error: unknown = null;
  await pipeline(Readable.from(input), transform, sink).catch((e: unknown) => (error = e));
  return { out: Buffer.concat(got), error };
}

async function encrypt(plain: Buffer, recipients: string[], sizes: readonly number[] = [plain.length || 1]): Promise<Buffer> {
  const { out, error } = await run(pieces(plain, sizes), createEncryptStream(recipients));
  if (error) throw error;
  return out;
}

function decrypt(file: Buffer, identities: string[], sizes: readonly number[] = [file.length || 1]) {
  return run(pieces(file, sizes), createDecryptStream(identities));
}

/** Decrypts what must fail, returning the error's reason and what was output before it. */
async function decryptFailure(file: Buffer, identities: string[], sizes?: readonly number[]): Promise<{ reason: AgeDecryptReason; message: string; out: Buffer; error: AgeDecryptError }> {
  const { out, error } = await decrypt(file, identities, sizes);
  expect(error).toBeInstanceOf(AgeDecryptError);
  const e = error as AgeDecryptError;
  expect(e.code).toBe('decrypt-failed');
  expect(e.exitCode).toBe(1);
  expect(e.message[0]).toBe(e.message[0]!.toLowerCase());
  return { reason: e.reason, message: e.message, out, error: e };
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let dir: string;
/** age-keygen's identity file, its identity and recipient. */
let key1: { file: string; identity: string; recipient: string };
/** One of ours, written to a file for `age -d -i`. */
let key2: { file: string; identity: string; recipient: string };

async function age(args: string[], input?: Buffer): Promise<Buffer> {
  const r = await execa('age', args, { input, encoding: 'buffer', stripFinalNewline: false, reject: false });
  if (r.exitCode !== 0) throw new Error(`age ${args.join(' ')} failed (${r.exitCode}): ${Buffer.from(r.stderr).toString()}`);
  return Buffer.from(r.stdout);
}

beforeAll(async () => {
  const probe = await execa('age', ['--version'], { reject: false });
  const keygen = await execa('age-keygen', ['--version'], { reject: false });
  if (probe.exitCode !== 0 || keygen.exitCode !== 0) {
    throw new Error('these tests check interoperability with the real `age` and `age-keygen` commands, which are not installed: apt-get install age');
  }
  dir = await mkdtemp(path.join(os.tmpdir(), 'hb-age-'));
  const file1 = path.join(dir, 'key1.txt');
  await execa('age-keygen', ['-o', file1]);
  const identity1 = (await readFile(file1, 'utf8')).split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
  key1 = { file: file1, identity: identity1, recipient: (await execa('age-keygen', ['-y', file1])).stdout.trim() };
  const ours = generateIdentity();
  const file2 = path.join(dir, 'key2.txt');
  await writeFile(file2, `# made by hybrid-backup's tests\n${ours.identity}\n`, { mode: 0o600 });
  key2 = { file: file2, ...ours };
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('keys', () => {
  it('reads age-keygen identities and derives the same recipient', async () => {
    expect(parseIdentity(key1.identity)).toEqual({ identity: key1.identity, recipient: key1.recipient });
    expect(await readIdentityFile(key1.file)).toEqual([key1.identity]);
    expect(await readIdentityFile(key2.file)).toEqual([key2.identity]);
    expect(parseRecipient(key1.recipient)).toBe(key1.recipient);
  });

  it('generates identities age-keygen agrees with', async () => {
    const g = generateIdentity();
    expect(g.identity).toMatch(/^AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}$/);
    expect(g.recipient).toMatch(/^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$/);
    const r = await execa('age-keygen', ['-y'], { input: `${g.identity}\n` });
    expect(r.stdout.trim()).toBe(g.recipient);
    expect(generateIdentity().identity).not.toBe(g.identity);
  });

  it('refuses recipients that are not X25519 ones, saying why', () => {
    const bad = (s: string, why: RegExp) => {
      try {
        parseRecipient(s);
        expect.unreachable(`${s} was accepted`);
      } catch (e) {
        expect(e).toBeInstanceOf(HbError);
        expect((e as HbError).code).toBe('config-invalid');
        expect((e as HbError).message).toMatch(why);
        expect((e as HbError).hint).toMatch(/age-keygen/);
      }
    };
    const r = key1.recipient;
    bad(r.slice(0, -1) + (r.endsWith('q') ? 'p' : 'q'), /checksum/);
    bad(r.slice(0, 10).toUpperCase() + r.slice(10), /case/);
    bad(r.toUpperCase(), /lowercase/);
    bad(r.slice(0, 30), /checksum|not bech32/);
    bad('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhi', /ssh keys are not supported/i);
    bad(`age1pq1${'q'.repeat(60)}`, /checksum|post-quantum/);
    expect(() => parseRecipient(key1.identity)).toThrow(/an age secret key was given where a recipient/);
    expect(() => parseRecipient(key1.identity)).not.toThrow(key1.identity.slice(16, 40));
    expect(parseRecipient(`  ${r}\n`)).toBe(r);
  });

  it('refuses a bad identity without ever showing it', async () => {
    const id = key1.identity;
    const damaged = id.slice(0, 20) + (id[20] === 'Q' ? 'P' : 'Q') + id.slice(21);
    for (const s of [damaged, id.toLowerCase(), key1.recipient]) {
      try {
        parseIdentity(s);
        expect.unreachable('accepted');
      } catch (e) {
        expect((e as HbError).code).toBe('config-invalid');
        expect((e as HbError).message).not.toContain(s.slice(16, 40));
        expect(`${(e as HbError).message} ${(e as HbError).hint}`).not.toContain(s.slice(16, 40));
      }
    }
    const file = path.join(dir, 'bad-identity.txt');
    await writeFile(file, `# a comment\n\n${id}\n${damaged}\n`);
    await expect(readIdentityFile(file)).rejects.toMatchObject({ code: 'config-invalid', message: expect.stringMatching(/^line 4 of the age identity file .* is not valid: its checksum is wrong/) });
    await expect(readIdentityFile(file)).rejects.toSatisfy((e: HbError) => !e.message.includes(damaged.slice(16)));
    await writeFile(file, '# only comments\n\n');
    await expect(readIdentityFile(file)).rejects.toMatchObject({ code: 'config-invalid', message: expect.stringMatching(/holds no identity/) });
    await expect(readIdentityFile(path.join(dir, 'nope.txt'))).rejects.toMatchObject({ code: 'config-file-missing', hint: expect.stringMatching(/HYBRID_BACKUP_AGE_IDENTITY_FILE/) });
    expect(() => createDecryptStream([])).toThrow(/no age identity/);
    expect(() => createEncryptStream([])).toThrow(/no age recipient/);
    expect(() => createEncryptStream(['age1nope'])).toThrow(HbError);
  });

  it('recognizes an age file by its first line', async () => {
    const file = await encrypt(Buffer.from('x'), [key1.recipient]);
    expect(isAgeFile(file)).toBe(true);
    expect(isAgeFile(file.subarray(0, 22))).toBe(true);
    expect(isAgeFile(file.subarray(0, 21))).toBe(false);
    expect(isAgeFile(Buffer.from('-- PostgreSQL database dump\n'))).toBe(false);
    expect(isAgeFile(Buffer.from('age-encryption.org/v2\n'))).toBe(false);
    expect(isAgeFile(new Uint8Array(0))).toBe(false);
  });
});

describe('interoperability with age', () => {
  it.each(SIZES)('age -d decrypts what the stream encrypts (%i bytes), for each recipient', async (size) => {
    const plain = randomBytes(size);
    // Written in awkward pieces: chunking must not depend on how the input arrives.
    const file = await encrypt(plain, [key1.recipient, key2.recipient], [1, 7, 65535, 100_000, 3]);
    expect(file.length).toBe(encryptedSize(size, 2));
    // (Buffer.equals: toEqual compares megabytes element by element, slowly.)
    expect((await age(['-d', '-i', key1.file], file)).equals(plain)).toBe(true);
    expect((await age(['-d', '-i', key2.file], file)).equals(plain)).toBe(true);
  });

  it.each(SIZES)('the stream decrypts what age -r encrypts (%i bytes), with either identity', async (size) => {
    const plain = randomBytes(size);
    const file = await age(['-r', key1.recipient, '-r', key2.recipient, '-r', generateIdentity().recipient], plain);
    for (const ids of [[key1.identity], [key2.identity], [generateIdentity().identity, key2.identity]]) {
      const { out, error } = await decrypt(file, ids, [5, 65553, 1, 4096]);
      expect(error).toBeNull();
      expect(out.equals(plain)).toBe(true);
    }
  });

  it('decrypts what age -e -i and age -R encrypt', async () => {
    const plain = randomBytes(200_000);
    const a = await age(['-e', '-i', key1.file], plain);
    expect((await decrypt(a, [key1.identity])).out.equals(plain)).toBe(true);
    const recipients = path.join(dir, 'recipients.txt');
    await writeFile(recipients, `# two\n${key1.recipient}\n${key2.recipient}\n`);
    const b = await age(['-R', recipients], plain);
    expect((await decrypt(b, await readIdentityFile(key2.file))).out.equals(plain)).toBe(true);
  });
});

describe('decryption failures', () => {
  it('names the identity when it matches none of the recipients', async () => {
    const file = await encrypt(randomBytes(1000), [key1.recipient, generateIdentity().recipient]);
    const f = await decryptFailure(file, [key2.identity]);
    expect(f.reason).toBe('no-match');
    expect(f.message).toBe(`no age identity matches the encrypted file: it is encrypted to 2 recipients (X25519), none of them the identity's (public key ${key2.recipient})`);
    expect(f.error.hint).toMatch(/HYBRID_BACKUP_AGE_IDENTITY_FILE/);
    expect(f.out.length).toBe(0);
  });

  it('refuses what is not an age file', async () => {
    for (const text of ['-- PostgreSQL database dump\n', '-----BEGIN AGE ENCRYPTED FILE-----\n', 'age-encryption.org/v2\n']) {
      const f = await decryptFailure(Buffer.from(text.repeat(1000)), [key1.identity]);
      expect(f.reason).toBe('header');
    }
    expect((await decryptFailure(Buffer.alloc(0), [key1.identity])).message).toMatch(/empty/);
  });

  describe('a truncated file', () => {
    const plain = randomBytes(3 * CHUNK + 100);
    let file: Buffer;
    let payloadStart: number;
    beforeAll(async () => {
      file = await encrypt(plain, [key1.recipient]);
      payloadStart = file.indexOf('\n---') + 1 + 48 + 16;
    });

    it.each([
      ['inside the version line', (): number => 10, 'truncated', 0],
      ['inside the MAC line', (): number => payloadStart - 30, 'truncated', 0],
      ['inside the payload nonce', (): number => payloadStart - 8, 'truncated', 0],
      ['right after the nonce', (): number => payloadStart, 'truncated', 0],
      ['at the end of chunk 1', (): number => payloadStart + SEALED, 'truncated', 1],
      ['at the end of chunk 2', (): number => payloadStart + 2 * SEALED, 'truncated', 2],
      ['at the end of chunk 3 (before the last)', (): number => payloadStart + 3 * SEALED, 'truncated', 3],
      ['inside chunk 2', (): number => payloadStart + SEALED + 1000, 'altered', 1],
      ['inside the last chunk\'s tag', (): number => file.length - 1, 'altered', 3],
      ['inside a chunk\'s first 16 bytes', (): number => payloadStart + SEALED + 5, 'truncated', 1],
    ] as const)('fails when cut %s, having output only authenticated chunks', async (_what, at, reason, chunksOut) => {
      const f = await decryptFailure(file.subarray(0, at()), [key1.identity], [4096, 65552, 1]);
      expect(f.reason).toBe(reason);
      expect(f.message).toMatch(/^the encrypted file (is truncated|was altered or is truncated)/);
      expect(f.out.equals(plain.subarray(0, chunksOut * CHUNK))).toBe(true);
    });

    it('fails when a file of whole chunks loses its last one', async () => {
      const whole = randomBytes(2 * CHUNK);
      const enc = await encrypt(whole, [key1.recipient]);
      const f = await decryptFailure(enc.subarray(0, enc.length - SEALED), [key1.identity]);
      expect(f.reason).toBe('truncated');
      expect(f.message).toBe('the encrypted file is truncated: it ends after chunk 1, which is not the last');
      // Chunk 1 authenticates (as a chunk that is not the last): it is output, then the stream fails.
      expect(f.out.equals(whole.subarray(0, CHUNK))).toBe(true);
      expect((await decrypt(enc, [key1.identity])).out.equals(whole)).toBe(true);
    });
  });

  describe('a damaged file', () => {
    const plain = randomBytes(3 * CHUNK + 100);
    let file: Buffer;
    let headerEnd: number;
    beforeAll(async () => {
      file = await encrypt(plain, [key1.recipient, key2.recipient]);
      headerEnd = file.indexOf('\n---') + 1 + 48;
    });
    const flip = (at: number, bit = 0) => {
      const copy = Buffer.from(file);
      copy[at]! ^= 1 << bit;
      return copy;
    };

    it('fails on one flipped bit anywhere in the header, outputting nothing', async () => {
      const seen = new Set<string>();
      for (let at = 0; at < headerEnd; at++) {
        const f = await decryptFailure(flip(at, at % 7), [key1.identity]);
        expect(['header', 'header-mac', 'no-match']).toContain(f.reason);
        expect(f.out.length).toBe(0);
        seen.add(f.reason);
      }
      expect([...seen].sort()).toEqual(['header', 'header-mac', 'no-match']);
    });

    it('says the header was altered when the MAC, or another recipient\'s stanza, changed', async () => {
      const mac = file.indexOf('\n--- ') + 5;
      const other = Buffer.from(file);
      other[mac + 3] = other[mac + 3] === 0x41 ? 0x42 : 0x41; // another base64 digit, still canonical
      expect(await decryptFailure(other, [key1.identity])).toMatchObject({ reason: 'header-mac', message: 'the encrypted file was altered: its header MAC does not match' });
      // The second stanza is key2's: key1 still unwraps the file key, but the MAC covers it.
      const second = file.indexOf('\n-> X25519 ', file.indexOf('\n-> X25519 ') + 1) + 12;
      const changed = Buffer.from(file);
      changed[second] = changed[second] === 0x41 ? 0x42 : 0x41;
      expect((await decryptFailure(changed, [key1.identity])).reason).toBe('header-mac');
    });

    it.each([
      ['in the payload nonce', 0 - 8, 0, 'the encrypted file was altered: chunk 1 does not authenticate'],
      ['in chunk 1', 5000, 0, 'the encrypted file was altered: chunk 1 does not authenticate'],
      ['in chunk 2\'s tag', 2 * SEALED - 3, 1, 'the encrypted file was altered: chunk 2 does not authenticate'],
      ['in chunk 3', 2 * SEALED + 77, 2, 'the encrypted file was altered: chunk 3 does not authenticate'],
      ['in the last chunk', 3 * SEALED + 50, 3, 'the encrypted file was altered or is truncated: its last chunk (4) does not authenticate'],
    ])('fails on one flipped bit %s, having output only the chunks before it', async (_what, offset, chunksOut, message) => {
      const payload = headerEnd + 16;
      const f = await decryptFailure(flip(payload + offset, 3), [key2.identity], [65552, 999]);
      expect(f.reason).toBe('altered');
      expect(f.message).toBe(message);
      expect(f.out.equals(plain.subarray(0, chunksOut * CHUNK))).toBe(true);
    });

    it('fails on data after the last chunk', async () => {
      const f = await decryptFailure(Buffer.concat([file, Buffer.from('x')]), [key1.identity]);
      expect(f.reason).toBe('altered');
      expect(f.out.equals(plain.subarray(0, 3 * CHUNK))).toBe(true);
      const one = randomBytes(CHUNK);
      const whole = await encrypt(one, [key1.recipient]);
      const g = await decryptFailure(Buffer.concat([whole, randomBytes(100)]), [key1.identity]);
      expect(g.message).toBe('the encrypted file was altered: data follows its last chunk (1)');
      expect(g.out.equals(one)).toBe(true);
    });
  });
});

describe('C2SP CCTV age test vectors', () => {
  interface Vector {
    name: string;
    expect: string;
    payload: string | undefined;
    identities: string[];
    file: Buffer;
  }
  const all: Vector[] = Object.entries(cctv as unknown as Record<string, Uint8Array>).map(([name, data]) => {
    const buf = Buffer.from(data);
    const split = buf.indexOf('\n\n');
    const fields = buf.toString('utf8', 0, split).split('\n').map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)] as const);
    const get = (k: string) => fields.filter(([key]) => key === k).map(([, v]) => v);
    const body = buf.subarray(split + 2);
    if (get('armored')[0] === 'yes') return { name, expect: 'skip: armored', payload: undefined, identities: [], file: body };
    const ids = get('identity');
    const x25519 = ids.filter((i) => i.startsWith('AGE-SECRET-KEY-1'));
    // Passphrase-only and post-quantum-only vectors do not apply; "empty" has no identity at all.
    const applies = x25519.length > 0 || (ids.length === 0 && get('passphrase').length === 0);
    return {
      name,
      expect: applies ? get('expect')[0]! : 'skip: not X25519',
      payload: get('payload')[0],
      identities: x25519.length ? x25519 : [generateIdentity().identity],
      file: get('compressed')[0] === 'zlib' ? inflateSync(body) : body,
    };
  });
  const vectors = all.filter((v) => !v.expect.startsWith('skip'));

  it('has the vectors that apply', () => {
    expect(all.length).toBe(143);
    expect(vectors.length).toBe(69);
  });

  const REASONS: Record<string, AgeDecryptReason[]> = {
    'no match': ['no-match'],
    'HMAC failure': ['header-mac'],
    'header failure': ['header'],
    'payload failure': ['truncated', 'altered'],
  };
  // A file that ends before its payload is reported as truncated, which the vectors call a header failure.
  const ENDS_IN_HEADER = new Set(['stream_no_nonce', 'stream_short_nonce']);

  it.each(vectors.map((v) => [v.name, v.expect, v] as const))('%s: %s', async (_name, expected, v) => {
    for (const sizes of [[v.file.length || 1], [1, 13, 65552, 4000]]) {
      const { out, error } = await decrypt(v.file, v.identities, sizes);
      if (expected === 'success') {
        expect(error).toBeNull();
      } else {
        expect(error).toBeInstanceOf(AgeDecryptError);
        const allowed = ENDS_IN_HEADER.has(v.name) ? ['truncated'] : REASONS[expected];
        expect(allowed).toContain((error as AgeDecryptError).reason);
      }
      // Whatever was output before a failure must be what the vector says may be released.
      if (v.payload) expect(sha256(out)).toBe(v.payload);
      else expect(out.length).toBe(0);
    }
  });
});

describe('streaming', () => {
  it('keeps memory bounded and respects backpressure through encrypt → decrypt', async () => {
    const total = 48 * 1024 * 1024;
    const block = randomBytes(1 << 20);
    let produced = 0;
    let consumed = 0;
    let maxInFlight = 0;
    const hashIn = createHash('sha256');
    const hashOut = createHash('sha256');
    async function* source() {
      while (produced < total) {
        produced += block.length;
        hashIn.update(block);
        yield block;
      }
    }
    const enc = createEncryptStream([key1.recipient]);
    const dec = createDecryptStream([key1.identity]);
    const sink = new Writable({
      highWaterMark: CHUNK,
      write(chunk: Buffer, _e, cb) {
        consumed += chunk.length;
        hashOut.update(chunk);
        maxInFlight = Math.max(maxInFlight, produced - consumed);
        setImmediate(cb); // a consumer slower than the producer
      },
    });
    await pipeline(source(), enc, dec, sink);
    expect(consumed).toBe(total);
    expect(hashOut.digest('hex')).toBe(hashIn.digest('hex'));
    // Without backpressure the whole 48 MiB would be in flight; with it, a few buffers' worth.
    expect(maxInFlight).toBeLessThan(4 * 1024 * 1024);
  });
});
