/**
 * The dump pipeline: the output of one or more dump commands (pg_dump, pg_dumpall), with text
 * between them, in order — never held whole — into `<final>.partial`, seen on its way by the COPY
 * scanner (row counts, data digests, sequences) and SHA-256 (of the bytes as stored), then fsynced.
 * Memory stays bounded by the stream buffers whatever the database size.
 *
 * Two ways, one result: a plain dump is written by pg_dump itself and read back as it grows
 * ({@link dumpDirect}); a dump that is rewritten, compressed (gzip on every core) or encrypted
 * streams through this process ({@link dumpStreamed}).
 *
 * Each command part must exit 0 and end with its tool's closing comment line; the first part that
 * does not stops the dump. This module only produces a complete, synced partial file or throws;
 * naming, renaming and recording are the caller's.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { PassThrough, Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import { createEncryptStream } from '../crypto/age.js';
import { HbError } from '../domain/errors.js';
import type { Compression, TableCounts } from '../domain/types.js';
import { loadExeca } from '../util/lazy.js';
import { redact } from '../util/redact.js';
import { CopyScanner, type TableDigest } from './copy-scanner.js';
import { FileFollower } from './file-follower.js';
import { Writeback } from '../util/writeback.js';
import { FileSink } from './file-sink.js';
import { ParallelGzip } from './gzip-parallel.js';
import { StreamTail, TAIL_BYTES } from './stream-tail.js';

/** A command whose stdout becomes part of the dump. */
export interface CommandPart {
  kind: 'command';
  /** For messages: "pg_dump", "pg_dump (schema)", … */
  label: string;
  path: string;
  args: string[];
  /** The closing comment line the output must end with. */
  marker: string;
  /**
   * Rewrites each line (for statements a target cannot run). Returning null drops the line: a
   * transform that rewrites a statement spanning several lines holds them (returning null) and
   * returns the whole statement, rewritten, at its last line. Not for parts carrying COPY data
   * unless `copyData` is set.
   */
  transformLine?: (line: string) => string | null;
  /**
   * The output carries COPY data (a `--data-only` dump): `transformLine` sees only the lines
   * outside COPY blocks; the rows pass through byte for byte, unsplit and undecoded.
   */
  copyData?: boolean;
}

/** Literal SQL between parts. */
export interface TextPart {
  kind: 'text';
  text: string;
}

export type DumpPart = CommandPart | TextPart;

export interface DumpSpec {
  parts: DumpPart[];
  /** Extra environment for every command (PGPASSWORD, …). */
  env: Record<string, string>;
  partialPath: string;
  compression: Compression;
  gzipLevel: number;
  /** Encrypt the file to these age recipients (`encryption.local`); empty or absent: plain. */
  encryptTo?: readonly string[];
  signal?: AbortSignal;
  /** Called at most every `progressEveryMs` with uncompressed bytes so far. */
  onProgress?: (rawBytes: number) => void;
  progressEveryMs?: number;
}

export interface DumpOutput {
  /** Bytes of the file as stored. */
  bytes: number;
  /** Bytes of SQL (uncompressed). */
  rawBytes: number;
  /** SHA-256 of the file as stored, hex. */
  sha256: string;
  /** Encrypted: the size and SHA-256 of the file inside (what `age -d` gives). */
  plain?: { bytes: number; sha256: string };
  tables: TableCounts;
  /** Each table's data as it passed through the stream (see {@link TableDigest}). */
  digests: Record<string, TableDigest>;
  /** Each sequence's position as the dump sets it. */
  sequences: Record<string, { value: string; called: boolean }>;
}

const STDERR_KEEP = 64 * 1024;

/** Passes chunks through unchanged while calling `fn` on each. */
class Tap extends Transform {
  constructor(private readonly fn: (chunk: Buffer) => void) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.fn(chunk);
    cb(null, chunk);
  }
}

/**
 * Applies a function to every line (the last line may lack its newline); a line the function
 * maps to null is dropped, newline included. Chunks are decoded with a StringDecoder, so a
 * character split across two chunks stays whole.
 */
export class LineMap extends Transform {
  private carry = '';
  private readonly decoder = new StringDecoder('utf8');
  constructor(private readonly fn: (line: string) => string | null) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const text = this.carry + this.decoder.write(chunk);
    const nl = text.lastIndexOf('\n');
    if (nl < 0) {
      this.carry = text;
      return cb();
    }
    this.carry = text.slice(nl + 1);
    let out = '';
    for (const line of text.slice(0, nl).split('\n')) {
      const r = this.fn(line);
      if (r !== null) out += `${r}\n`;
    }
    cb(null, out ? Buffer.from(out) : undefined);
  }
  override _flush(cb: TransformCallback): void {
    const rest = this.carry + this.decoder.end();
    const r = rest ? this.fn(rest) : null;
    cb(null, r ? Buffer.from(r) : undefined);
  }
}

const NL = 0x0a;
/** A COPY block of a plain dump ends with a line holding only `\.`. */
const COPY_END = Buffer.from('\n\\.\n');
const COPY_HEADER = /^COPY .+ FROM stdin;$/;

/**
 * {@link LineMap} for a plain dump carrying COPY data: lines outside COPY blocks go through the
 * function; the rows of a block are passed on as they came, found by searching for the block's
 * end (`\n\.\n`, natively) instead of splitting them into lines, so the data costs next to
 * nothing. In COPY text format no row can be the line `\.` (a backslash in data is `\\`).
 */
export class CopyAwareLineMap extends Transform {
  /** Outside a block: the current line's bytes so far. */
  private pending: Buffer[] = [];
  private inCopy = false;
  /** Inside a block: how many bytes of `\n\.\n` the data seen so far ends with (the header's newline counts). */
  private matched = 0;
  constructor(private readonly fn: (line: string) => string | null) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    // rewritten lines are gathered; rows are pushed as slices of the chunk, never copied
    let out = '';
    const flush = () => {
      if (out) this.push(Buffer.from(out));
      out = '';
    };
    let pos = 0;
    const n = chunk.length;
    while (pos < n) {
      if (this.inCopy) {
        const end = this.copyEnd(chunk, pos);
        flush();
        if (end < 0) {
          this.push(chunk.subarray(pos));
          break;
        }
        this.push(chunk.subarray(pos, end));
        this.inCopy = false;
        pos = end;
        continue;
      }
      const nl = chunk.indexOf(NL, pos);
      if (nl < 0) {
        this.pending.push(Buffer.from(chunk.subarray(pos)));
        break;
      }
      this.pending.push(chunk.subarray(pos, nl));
      const line = Buffer.concat(this.pending).toString('utf8');
      this.pending = [];
      pos = nl + 1;
      const r = this.fn(line);
      if (r !== null) out += `${r}\n`;
      if (COPY_HEADER.test(line)) {
        this.inCopy = true;
        this.matched = 1;
      }
    }
    flush();
    cb();
  }
  /** Where the block ends in `chunk` (just after its `\.` line), from `pos`; -1 when not in it. */
  private copyEnd(chunk: Buffer, pos: number): number {
    // a terminator begun in the chunks before
    if (this.matched > 0) {
      let k = 0;
      while (this.matched + k < COPY_END.length && pos + k < chunk.length && chunk[pos + k] === COPY_END[this.matched + k]) k++;
      if (this.matched + k === COPY_END.length) return pos + k;
      if (pos + k === chunk.length) {
        this.matched += k;
        return -1;
      }
      this.matched = 0;
    }
    const i = chunk.indexOf(COPY_END, pos);
    if (i >= 0) return i + COPY_END.length;
    // how much of a terminator the chunk ends with
    for (let m = Math.min(COPY_END.length - 1, chunk.length - pos); m > 0; m--) {
      if (chunk.subarray(chunk.length - m).equals(COPY_END.subarray(0, m))) {
        this.matched = m;
        return -1;
      }
    }
    return -1;
  }
  override _flush(cb: TransformCallback): void {
    if (this.inCopy || this.pending.length === 0) return cb();
    const r = this.fn(Buffer.concat(this.pending).toString('utf8'));
    cb(null, r ? Buffer.from(r) : undefined);
  }
}

function hintForStderr(stderr: string): string | undefined {
  if (/password authentication failed|no password supplied/i.test(stderr)) return 'check the user and password in DATABASE_URL';
  if (/database ".*" does not exist/i.test(stderr)) return 'check the database name in DATABASE_URL';
  if (/server version mismatch|aborting because of server version mismatch/i.test(stderr)) return 'install the client tools of the server\'s major version (postgresql-client-<N>)';
  if (/permission denied/i.test(stderr)) return 'the database user needs read access to every object dumped';
  if (/could not connect|connection to server/i.test(stderr)) return 'check that the server is running and reachable';
  if (/invalid snapshot identifier|could not import the requested snapshot/i.test(stderr)) return 'the exporting connection closed early; run the backup again';
  return undefined;
}

const aborted = () => new HbError('dump-aborted', 'the backup was stopped before pg_dump finished', 'the partial file was removed; run the backup again');

/** A failure to write the backup file, said with its errno (take-backup adds the free space to ENOSPC). */
function writeFailed(file: string, e: NodeJS.ErrnoException | string): HbError {
  const message = typeof e === 'string' ? e : e.message;
  const code = typeof e === 'string' ? (/No space left on device/i.test(e) ? 'ENOSPC' : undefined) : e.code;
  const hint = code === 'ENOSPC' ? 'free disk space in the backup directory, or move BACKUP_DIR to a larger disk' : undefined;
  // The errno travels as the cause, so that callers (take-backup adds the free space) test it, not the text.
  const cause = typeof e === 'string' ? Object.assign(new Error(redact(e)), { code }) : e;
  return new HbError('dump-write-failed', `cannot write ${file}: ${code && !message.includes(code) ? `${code}: ` : ''}${redact(message)}`, hint, { cause });
}

/** Whether an error is the disk being full: `disk-full`, or a write that failed with ENOSPC. */
export function isNoSpace(err: HbError): boolean {
  return err.code === 'disk-full' || (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOSPC';
}

/** A started command part: the child, and the end of its stderr so far. */
interface RunningPart {
  child: ReturnType<Awaited<ReturnType<typeof loadExeca>>['execa']>;
  stderr: () => string;
  /** Stops listening to the child (on abort). */
  detach: () => void;
}

/**
 * Starts a command part with its stdout a pipe (`'pipe'`) or a file descriptor. `wrapper` runs the
 * command under `setpriv --pdeathsig KILL`, so that a pg_dump writing into a file dies with this
 * process (one writing into a pipe dies of SIGPIPE).
 */
async function startPart(part: CommandPart, spec: DumpSpec, stdout: 'pipe' | number, wrapper: string | null): Promise<RunningPart> {
  const { execa } = await loadExeca();
  const [file, args] = wrapper ? [wrapper, ['--pdeathsig', 'KILL', '--', part.path, ...part.args]] : [part.path, part.args];
  const child = execa(file, args, {
    env: spec.env,
    extendEnv: true,
    stdin: 'ignore',
    stdout: stdout as 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    cancelSignal: spec.signal,
    forceKillAfterDelay: 5000,
    encoding: 'buffer',
  });
  let stderrTail = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderrTail = (stderrTail + d.toString('utf8')).slice(-STDERR_KEEP);
  });
  // On abort stop listening at once: children of a killed wrapper script may keep the pipes open.
  const onAbort = () => {
    child.stderr?.destroy();
    child.stdout?.destroy();
  };
  spec.signal?.addEventListener('abort', onAbort, { once: true });
  return { child, stderr: () => stderrTail, detach: () => spec.signal?.removeEventListener('abort', onAbort) };
}

/** Throws why a finished command part failed, if it did (not the checks of its output). */
function checkExit(part: CommandPart, spec: DumpSpec, exit: PromiseSettledResult<Awaited<RunningPart['child']>>, stderrTail: string): void {
  const r = exit.status === 'fulfilled' ? exit.value : undefined;
  if (spec.signal?.aborted || r?.isCanceled) throw aborted();
  const stderr = redact(stderrTail.trim());
  if (!r || r.failed) {
    const how = r ? (r.signal ? `was killed by ${r.signal}` : `exited with code ${r.exitCode ?? '?'}`) : `could not be started: ${redact(String((exit as PromiseRejectedResult).reason))}`;
    const lines = stderr.split('\n').filter(Boolean).slice(-5).join(' | ');
    const write = /could not write to output file: (.*)/.exec(stderr);
    if (write) throw writeFailed(spec.partialPath, `${write[1]!.trim()} (${part.label} ${how})`);
    throw new HbError('dump-failed', `${part.label} ${how}${lines ? `: ${lines}` : ''}`, hintForStderr(stderr));
  }
}

/** Throws when a part's output is empty or lacks its closing line. */
function checkOutput(part: CommandPart, tail: StreamTail): void {
  if (tail.bytes === 0) throw new HbError('dump-empty', `${part.label} exited successfully but wrote nothing`, 'check the pg_dump executable and its arguments (dump.pgBinDir)');
  if (!tail.endsWith(part.marker)) {
    throw new HbError(
      'dump-incomplete',
      `the ${part.label} output ends without its closing "${part.marker}" line after ${tail.bytes} bytes`,
      'the output was cut short; check the server log and pg_dump\'s stderr, then run the backup again',
    );
  }
}

/** Runs one command part into `into` (not ending it). Throws the part's failure. */
async function runPart(part: CommandPart, into: Writable, spec: DumpSpec): Promise<void> {
  const running = await startPart(part, spec, 'pipe', null);
  const { child } = running;
  const tail = new StreamTail();
  const map = part.transformLine ? [part.copyData ? new CopyAwareLineMap(part.transformLine) : new LineMap(part.transformLine)] : [];
  const stages: Transform[] = [...map, new Tap((c) => tail.push(c))];
  // Forwards into the shared stream with its backpressure, without ending it.
  const forward = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      if (into.destroyed) return cb(new Error('the backup file stream closed'));
      if (into.write(chunk)) return cb();
      const onDrain = () => (into.off('close', onClose), cb());
      const onClose = () => (into.off('drain', onDrain), cb(new Error('the backup file stream closed')));
      into.once('drain', onDrain);
      into.once('close', onClose);
    },
  });
  try {
    const [, exit] = await Promise.allSettled([pipeline([child.stdout!, ...stages, forward]), child]);
    checkExit(part, spec, exit, running.stderr());
    checkOutput(part, tail);
  } finally {
    running.detach();
  }
}

/**
 * `setpriv`, when it can set a parent-death signal (util-linux ≥ 2.33): the condition for letting
 * pg_dump write the file itself. Asked by running it once (a few milliseconds), since an older
 * setpriv would fail the dump instead.
 */
function findSetpriv(): Promise<string | null> {
  setprivFound ??= (async () => {
    const { execa } = await loadExeca();
    for (const candidate of ['/usr/bin/setpriv', '/bin/setpriv']) {
      const r = await execa(candidate, ['--pdeathsig', 'KILL', '--', 'true'], { reject: false, stdio: 'ignore', timeout: 10_000 });
      if (r.exitCode === 0) return candidate;
    }
    return null;
  })();
  return setprivFound;
}
/** Asked once per process (the daemon takes many backups). */
let setprivFound: Promise<string | null> | undefined;

/**
 * Runs the parts into `spec.partialPath` (created exclusively, mode 0600) and fsyncs it.
 * On any failure the partial file is removed before the error is thrown.
 *
 * A plain, unencrypted dump whose output is not rewritten goes {@link dumpDirect direct}: pg_dump
 * writes the file itself, as `pg_dump -f` would. Otherwise the output is {@link dumpStreamed streamed}
 * through this process (rewritten lines, gzip, encryption).
 * @throws HbError `dump-failed` (a command failed; its stderr, redacted), `dump-empty`,
 *   `dump-incomplete` (no closing line), `dump-write-failed`, `dump-aborted`.
 */
export async function dumpToPartial(spec: DumpSpec): Promise<DumpOutput> {
  const plain = spec.compression === 'none' && !spec.encryptTo?.length && spec.parts.every((p) => p.kind === 'text' || !p.transformLine);
  if (plain) {
    const setpriv = await findSetpriv();
    if (setpriv) return dumpDirect(spec, setpriv);
  }
  return dumpStreamed(spec);
}

/** Calls `onProgress` with the bytes seen, at most every `progressEveryMs`. */
function progressReporter(spec: DumpSpec): (bytes: number) => void {
  let last = 0;
  const every = spec.progressEveryMs ?? 250;
  return (bytes) => {
    if (!spec.onProgress) return;
    const t = Date.now();
    if (t - last < every) return;
    last = t;
    spec.onProgress(bytes);
  };
}

/**
 * The plain path. pg_dump's stdout is the partial file itself, and this process reads the file back
 * as it grows ({@link FileFollower}, 1 MiB reads) for the COPY scanner and the SHA-256. Against
 * streaming through a pipe this saves two copies of every byte (into the pipe, out of it) and the
 * pipe's 64 KiB-at-a-time wake-ups on both sides: pg_dump runs as it does with `-f`, and what this
 * process adds is reading the page cache, hashing and counting (see bench/RESULTS.md).
 *
 * The guarantees stay: the hash and the counts are of the bytes stored; each part must exit 0 and
 * end with its closing line (checked from the file, in the part's own byte range); the file is
 * fsynced (early writeback every 64 MiB, as the sink does) before this resolves. pg_dump runs under
 * `setpriv --pdeathsig KILL`: writing into a file, it would not notice this process dying.
 */
async function dumpDirect(spec: DumpSpec, setpriv: string): Promise<DumpOutput> {
  const scanner = new CopyScanner();
  const hash = createHash('sha256');
  const progress = progressReporter(spec);
  let fd: number;
  try {
    // read and write: pg_dump appends through it, the follower reads through it (pread)
    fd = fs.openSync(spec.partialPath, 'wx+', 0o600);
  } catch (e) {
    throw new HbError('dump-write-failed', `cannot create ${spec.partialPath}: ${(e as Error).message}`, 'check that the backup directory is writable and not full');
  }
  const writeback = new Writeback(fd);
  const follower = new FileFollower(fd, (chunk) => {
    scanner.push(chunk);
    hash.update(chunk);
    progress(scanner.bytes);
    writeback.wrote(scanner.bytes);
  });
  let readError: unknown = null;
  const following = follower.done.catch((e: unknown) => {
    readError = e;
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    follower.stop();
    await following;
    await writeback.settled();
    await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
  };
  const fail = async (err: HbError): Promise<never> => {
    await close();
    await fsp.rm(spec.partialPath, { force: true });
    throw err;
  };
  const stopped = (): HbError | null => {
    if (spec.signal?.aborted) return aborted();
    if (writeback.error) return writeFailed(spec.partialPath, writeback.error);
    if (readError) return new HbError('dump-write-failed', `cannot read ${spec.partialPath} back: ${redact((readError as Error).message)}`);
    return null;
  };

  /** Bytes in the file: every part appends at the descriptor's offset, shared with the children. */
  let size = 0;
  try {
    for (const part of spec.parts) {
      const before = stopped();
      if (before) return await fail(before);
      if (part.kind === 'text') {
        const bytes = Buffer.from(part.text);
        try {
          for (let off = 0; off < bytes.length; ) off += fs.writeSync(fd, bytes, off);
        } catch (e) {
          return await fail(writeFailed(spec.partialPath, e as NodeJS.ErrnoException));
        }
        size += bytes.length;
        continue;
      }
      const start = size;
      const running = await startPart(part, spec, fd, setpriv);
      let exit: PromiseSettledResult<Awaited<RunningPart['child']>>;
      try {
        [exit] = await Promise.allSettled([running.child]);
      } finally {
        running.detach();
      }
      size = fs.fstatSync(fd).size;
      try {
        checkExit(part, spec, exit, running.stderr());
        // the part's last bytes, read back from the file
        const end = Buffer.alloc(Math.min(size - start, TAIL_BYTES));
        if (end.length > 0) fs.readSync(fd, end, 0, end.length, size - end.length);
        checkOutput(part, StreamTail.ofEnd(end, size - start));
      } catch (e) {
        const outside = stopped();
        if (outside) return await fail(outside);
        const err = e instanceof HbError ? e : new HbError('dump-failed', redact((e as Error).message));
        if (err.code === 'dump-incomplete') {
          // Let the scanner reach the end, to say where the output stopped.
          follower.finish(size);
          await following;
          if (scanner.insideCopy) return await fail(new HbError(err.code, `${err.message} (it stopped inside table data)`, err.hint));
        }
        return await fail(err);
      }
    }
    follower.finish(size);
    await following;
    const after = stopped();
    if (after) return await fail(after);
    try {
      await writeback.sync();
    } catch (e) {
      return await fail(writeFailed(spec.partialPath, e as NodeJS.ErrnoException));
    }
    await close();
  } catch (e) {
    // not one of ours (fstat, an unexpected throw): still never leave the partial file behind
    if (e instanceof HbError) throw e;
    return fail(new HbError('dump-write-failed', `cannot write ${spec.partialPath}: ${redact((e as Error).message)}`));
  }
  spec.onProgress?.(scanner.bytes);
  return {
    bytes: size,
    rawBytes: scanner.bytes,
    sha256: hash.digest('hex'),
    tables: { ...scanner.tables },
    digests: { ...scanner.digests },
    sequences: { ...scanner.sequences },
  };
}

/**
 * The streamed path: the parts' output flows through this process — the COPY scanner, then gzip
 * (on every core, {@link ParallelGzip}) and the optional age encryption — into {@link FileSink},
 * which hashes the bytes as stored.
 */
async function dumpStreamed(spec: DumpSpec): Promise<DumpOutput> {
  const scanner = new CopyScanner();
  const hash = createHash('sha256');
  const progress = progressReporter(spec);
  const inspect = (chunk: Buffer) => {
    scanner.push(chunk);
    progress(scanner.bytes);
  };
  const gzip = spec.compression === 'gzip';
  const encrypt = !!spec.encryptTo?.length;
  const plainHash = encrypt ? createHash('sha256') : null;
  let plainBytes = 0;
  let sink: FileSink;
  try {
    // Plain: the sink sees the SQL itself, so it inspects and hashes it in one step.
    sink = new FileSink(spec.partialPath, 0o600, gzip || encrypt ? (c) => hash.update(c) : (c) => (inspect(c), hash.update(c)));
  } catch (e) {
    throw new HbError('dump-write-failed', `cannot create ${spec.partialPath}: ${(e as Error).message}`, 'check that the backup directory is writable and not full');
  }
  const head = new PassThrough({ highWaterMark: 1 << 20 });
  const plainTap = (c: Buffer) => (plainHash!.update(c), (plainBytes += c.length));
  const stages: Transform[] = [];
  if (gzip) {
    stages.push(new Tap(inspect), new ParallelGzip({ level: spec.gzipLevel }));
    if (encrypt) stages.push(new Tap(plainTap));
  } else if (encrypt) {
    // The SQL is the file inside the age file: one tap inspects it and hashes it.
    stages.push(new Tap((c) => (inspect(c), plainTap(c))));
  }
  if (encrypt) stages.push(createEncryptStream(spec.encryptTo!));
  let writeError: unknown = null;
  const flow = pipeline([head, ...stages, sink], spec.signal ? { signal: spec.signal } : {}).catch((e: unknown) => {
    writeError = e;
    head.destroy(); // stops the part being copied in
  });

  const fail = async (err: HbError): Promise<never> => {
    head.destroy();
    await flow;
    await fsp.rm(spec.partialPath, { force: true });
    throw err;
  };
  /** Why the dump stopped from outside a part: an abort (which also errors the stream), or a write failure. */
  const stopped = (): HbError | null => {
    if (spec.signal?.aborted) return aborted();
    if (!writeError) return null;
    return writeFailed(spec.partialPath, writeError as NodeJS.ErrnoException);
  };

  for (const part of spec.parts) {
    const before = stopped();
    if (before) return fail(before);
    if (part.kind === 'text') {
      if (!head.write(part.text)) {
        // 'drain', or 'close' when the stream was destroyed meanwhile (an abort, a write error)
        await new Promise<void>((resolve) => {
          const done = () => (head.off('drain', done), head.off('close', done), resolve());
          head.once('drain', done);
          head.once('close', done);
        });
      }
      continue;
    }
    try {
      await runPart(part, head, spec);
    } catch (e) {
      const outside = stopped();
      if (outside) return fail(outside);
      const err = e instanceof HbError ? e : new HbError('dump-failed', redact((e as Error).message));
      if (err.code === 'dump-incomplete') {
        // Let what was written reach the scanner, to say where the output stopped.
        head.end();
        await flow;
        if (scanner.insideCopy) return fail(new HbError(err.code, `${err.message} (it stopped inside table data)`, err.hint));
      }
      return fail(err);
    }
  }
  head.end();
  await flow;
  const after = stopped();
  if (after) return fail(after);
  spec.onProgress?.(scanner.bytes);
  return {
    bytes: sink.bytes,
    rawBytes: scanner.bytes,
    sha256: hash.digest('hex'),
    ...(plainHash ? { plain: { bytes: plainBytes, sha256: plainHash.digest('hex') } } : {}),
    tables: { ...scanner.tables },
    digests: { ...scanner.digests },
    sequences: { ...scanner.sequences },
  };
}
