/**
 * The dump pipeline: the output of one or more dump commands (pg_dump, pg_dumpall), with text
 * between them, streamed in order — never held whole — through the COPY scanner, optionally gzip,
 * and SHA-256 into `<final>.partial`, then fsynced. Memory stays bounded by the stream buffers
 * whatever the database size.
 *
 * Each command part must exit 0 and end with its tool's closing comment line; the first part that
 * does not stops the dump. This module only produces a complete, synced partial file or throws;
 * naming, renaming and recording are the caller's.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import { PassThrough, Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StringDecoder } from 'node:string_decoder';
import { createGzip } from 'node:zlib';
import { HbError } from '../domain/errors.js';
import type { Compression, TableCounts } from '../domain/types.js';
import { loadExeca } from '../util/lazy.js';
import { redact } from '../util/redact.js';
import { CopyScanner } from './copy-scanner.js';
import { FileSink } from './file-sink.js';
import { StreamTail } from './stream-tail.js';

/** A command whose stdout becomes part of the dump. */
export interface CommandPart {
  kind: 'command';
  /** For messages: "pg_dump", "pg_dump (schema)", … */
  label: string;
  path: string;
  args: string[];
  /** The closing comment line the output must end with. */
  marker: string;
  /** Rewrites each line (for statements a target cannot run); not for parts carrying COPY data. */
  transformLine?: (line: string) => string;
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
  tables: TableCounts;
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
 * Applies a function to every line (the last line may lack its newline). Chunks are decoded with
 * a StringDecoder, so a character split across two chunks stays whole.
 */
export class LineMap extends Transform {
  private carry = '';
  private readonly decoder = new StringDecoder('utf8');
  constructor(private readonly fn: (line: string) => string) {
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
    cb(null, Buffer.from(`${text.slice(0, nl).split('\n').map(this.fn).join('\n')}\n`));
  }
  override _flush(cb: TransformCallback): void {
    const rest = this.carry + this.decoder.end();
    cb(null, rest ? Buffer.from(this.fn(rest)) : undefined);
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

/** Runs one command part into `into` (not ending it). Throws the part's failure. */
async function runPart(part: CommandPart, into: Writable, spec: DumpSpec): Promise<void> {
  const { execa } = await loadExeca();
  const child = execa(part.path, part.args, {
    env: spec.env,
    extendEnv: true,
    stdin: 'ignore',
    stdout: 'pipe',
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
  const tail = new StreamTail();
  const stages: Transform[] = [...(part.transformLine ? [new LineMap(part.transformLine)] : []), new Tap((c) => tail.push(c))];
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
    const r = exit.status === 'fulfilled' ? exit.value : undefined;
    if (spec.signal?.aborted || r?.isCanceled) throw new HbError('dump-aborted', 'the backup was stopped before pg_dump finished', 'the partial file was removed; run the backup again');
    const stderr = redact(stderrTail.trim());
    if (!r || r.failed) {
      const how = r ? (r.signal ? `was killed by ${r.signal}` : `exited with code ${r.exitCode ?? '?'}`) : `could not be started: ${redact(String((exit as PromiseRejectedResult).reason))}`;
      const lines = stderr.split('\n').filter(Boolean).slice(-5).join(' | ');
      throw new HbError('dump-failed', `${part.label} ${how}${lines ? `: ${lines}` : ''}`, hintForStderr(stderr));
    }
    if (tail.bytes === 0) throw new HbError('dump-empty', `${part.label} exited successfully but wrote nothing`, 'check the pg_dump executable and its arguments (dump.pgBinDir)');
    if (!tail.endsWith(part.marker)) {
      throw new HbError(
        'dump-incomplete',
        `the ${part.label} output ends without its closing "${part.marker}" line after ${tail.bytes} bytes`,
        'the output was cut short; check the server log and pg_dump\'s stderr, then run the backup again',
      );
    }
  } finally {
    spec.signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Runs the parts into `spec.partialPath` (created exclusively, mode 0600) and fsyncs it.
 * On any failure the partial file is removed before the error is thrown.
 * @throws HbError `dump-failed` (a command failed; its stderr, redacted), `dump-empty`,
 *   `dump-incomplete` (no closing line), `dump-write-failed`, `dump-aborted`.
 */
export async function dumpToPartial(spec: DumpSpec): Promise<DumpOutput> {
  const scanner = new CopyScanner();
  const hash = createHash('sha256');
  let lastProgress = 0;
  const every = spec.progressEveryMs ?? 250;
  const inspect = (chunk: Buffer) => {
    scanner.push(chunk);
    if (spec.onProgress) {
      const t = Date.now();
      if (t - lastProgress >= every) {
        lastProgress = t;
        spec.onProgress(scanner.bytes);
      }
    }
  };
  const gzip = spec.compression === 'gzip';
  let sink: FileSink;
  try {
    // Plain: the sink sees the SQL itself, so it inspects and hashes it in one step.
    sink = new FileSink(spec.partialPath, 0o600, gzip ? (c) => hash.update(c) : (c) => (inspect(c), hash.update(c)));
  } catch (e) {
    throw new HbError('dump-write-failed', `cannot create ${spec.partialPath}: ${(e as Error).message}`, 'check that the backup directory is writable and not full');
  }
  const head = new PassThrough({ highWaterMark: 1 << 20 });
  const stages = gzip ? [new Tap(inspect), createGzip({ level: spec.gzipLevel, chunkSize: 256 * 1024 })] : [];
  let writeError: unknown = null;
  const flow = pipeline([head, ...stages, sink], spec.signal ? { signal: spec.signal } : {}).catch((e: unknown) => {
    writeError = e;
    head.destroy(); // stops the part being copied in
  });

  const fail = async (err: HbError): Promise<never> => {
    head.destroy();
    await flow;
    await fs.rm(spec.partialPath, { force: true });
    throw err;
  };
  /** Why the dump stopped from outside a part: an abort (which also errors the stream), or a write failure. */
  const stopped = (): HbError | null => {
    if (spec.signal?.aborted) return new HbError('dump-aborted', 'the backup was stopped before pg_dump finished', 'the partial file was removed; run the backup again');
    if (!writeError) return null;
    const e = writeError as NodeJS.ErrnoException;
    const hint = e.code === 'ENOSPC' ? 'free disk space in the backup directory, or move BACKUP_DIR to a larger disk' : undefined;
    return new HbError('dump-write-failed', `cannot write ${spec.partialPath}: ${redact(e.message)}`, hint);
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
  return { bytes: sink.bytes, rawBytes: scanner.bytes, sha256: hash.digest('hex'), tables: { ...scanner.tables } };
}
