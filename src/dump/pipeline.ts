/**
 * The dump pipeline: pg_dump's stdout streamed — never held whole — through the COPY scanner,
 * optionally gzip, and SHA-256 into `<final>.partial` (coalesced 1 MiB writes), then fsynced. Memory stays bounded by the
 * stream buffers whatever the database size.
 *
 * This module only produces a complete, synced partial file or throws; naming, renaming and
 * recording are the caller's.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { loadExeca } from '../util/lazy.js';
import { HbError } from '../domain/errors.js';
import type { Compression, TableCounts } from '../domain/types.js';
import { redact } from '../util/redact.js';
import { CopyScanner } from './copy-scanner.js';
import { FileSink } from './file-sink.js';

export interface DumpSpec {
  /** pg_dump executable. */
  pgDump: string;
  /** Arguments; the pipeline adds nothing but what is here. */
  args: string[];
  /** Extra environment (PGPASSWORD, …). */
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
  /** Bytes pg_dump wrote (uncompressed). */
  rawBytes: number;
  /** SHA-256 of the file as stored, hex. */
  sha256: string;
  tables: TableCounts;
  stderr: string;
}

const STDERR_KEEP = 64 * 1024;

/** Passes chunks through unchanged while feeding the scanner and/or hash. */
class Tap extends Transform {
  constructor(private readonly fn: (chunk: Buffer) => void) {
    super({ highWaterMark: 1 << 20 });
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.fn(chunk);
    cb(null, chunk);
  }
}

function describeExit(r: { exitCode?: number | undefined; signal?: string | undefined; isCanceled?: boolean }): string {
  if (r.signal) return `was killed by ${r.signal}`;
  return `exited with code ${r.exitCode ?? '?'}`;
}

/**
 * Runs pg_dump into `spec.partialPath` (created exclusively, mode 0600) and fsyncs it.
 * On any failure the partial file is removed before the error is thrown.
 * @throws HbError `dump-failed` (pg_dump failed; its stderr, redacted), `dump-empty`,
 *   `dump-incomplete` (no closing line), `dump-write-failed`, `dump-aborted`.
 */
export async function dumpToPartial(spec: DumpSpec): Promise<DumpOutput> {
  const scanner = new CopyScanner();
  const hash = createHash('sha256');
  let stderrTail = '';
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
    // Plain: the sink sees pg_dump's bytes, so it inspects and hashes them in one step.
    sink = new FileSink(spec.partialPath, 0o600, gzip ? (c) => hash.update(c) : (c) => (inspect(c), hash.update(c)));
  } catch (e) {
    throw new HbError('dump-write-failed', `cannot create ${spec.partialPath}: ${(e as Error).message}`, 'check that the backup directory is writable and not full');
  }

  const { execa } = await loadExeca();
  const child = execa(spec.pgDump, spec.args, {
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
  child.stderr!.on('data', (d: Buffer) => {
    stderrTail = (stderrTail + d.toString('utf8')).slice(-STDERR_KEEP);
  });
  // On abort stop listening at once: children of a killed wrapper script may keep stderr open.
  spec.signal?.addEventListener('abort', () => child.stderr?.destroy(), { once: true });

  const stages = gzip ? [new Tap(inspect), createGzip({ level: spec.gzipLevel, chunkSize: 256 * 1024 })] : [];

  const [flow, exit] = await Promise.allSettled([
    // The signal also ends the pipe: a pg_dump wrapper's children may hold it open after the kill.
    pipeline([child.stdout!, ...stages, sink], spec.signal ? { signal: spec.signal } : {}).catch((e: unknown) => {
      // Our side failed (disk full, …): stop pg_dump rather than let it block on a full pipe.
      child.kill('SIGTERM');
      throw e;
    }),
    child,
  ]);

  const fail = async (err: HbError): Promise<never> => {
    await fs.rm(spec.partialPath, { force: true });
    throw err;
  };

  const result = exit.status === 'fulfilled' ? exit.value : undefined;
  const stderr = redact(stderrTail.trim());
  if (spec.signal?.aborted || result?.isCanceled) {
    return fail(new HbError('dump-aborted', 'the backup was stopped before pg_dump finished', 'the partial file was removed; run the backup again'));
  }
  if (flow.status === 'rejected') {
    const e = flow.reason as NodeJS.ErrnoException;
    const hint = e.code === 'ENOSPC' ? 'free disk space in the backup directory, or move BACKUP_DIR to a larger disk' : undefined;
    return fail(new HbError('dump-write-failed', `cannot write ${spec.partialPath}: ${redact(e.message)}`, hint));
  }
  if (!result || result.failed) {
    const how = result ? describeExit(result) : `could not be started: ${redact(String((exit as PromiseRejectedResult).reason))}`;
    const firstLines = stderr.split('\n').filter(Boolean).slice(-5).join(' | ');
    return fail(new HbError('dump-failed', `pg_dump ${how}${firstLines ? `: ${firstLines}` : ''}`, hintForStderr(stderr)));
  }
  if (scanner.bytes === 0) {
    return fail(new HbError('dump-empty', 'pg_dump exited successfully but wrote nothing', 'check the pg_dump executable and its arguments (dump.pgBinDir)'));
  }
  if (!scanner.complete) {
    const where = scanner.insideCopy ? ' (it stopped inside table data)' : '';
    return fail(
      new HbError(
        'dump-incomplete',
        `the dump ends without pg_dump's closing "-- PostgreSQL database dump complete" line after ${scanner.bytes} bytes${where}`,
        'the output was cut short; check the server log and pg_dump\'s stderr, then run the backup again',
      ),
    );
  }
  spec.onProgress?.(scanner.bytes);
  return { bytes: sink.bytes, rawBytes: scanner.bytes, sha256: hash.digest('hex'), tables: { ...scanner.tables }, stderr };
}

function hintForStderr(stderr: string): string | undefined {
  if (/password authentication failed|no password supplied/i.test(stderr)) return 'check the user and password in DATABASE_URL';
  if (/database ".*" does not exist/i.test(stderr)) return 'check the database name in DATABASE_URL';
  if (/server version mismatch|aborting because of server version mismatch/i.test(stderr)) return 'install the client tools of the server\'s major version (postgresql-client-<N>)';
  if (/permission denied/i.test(stderr)) return 'the database user needs read access to every object dumped';
  if (/could not connect|connection to server/i.test(stderr)) return 'check that the server is running and reachable';
  return undefined;
}
