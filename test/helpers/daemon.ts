/** Starting the real service as a subprocess, waiting for its socket, and talking raw protocol. */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { CLI, cliEnv } from './cli.js';

export interface Daemon {
  proc: ResultPromise;
  socket: string;
  output(): string;
}

/** Whether a result (the last message of a request) has arrived. */
export const hasResult = (replies: any[]): boolean => replies.some((r) => r.type === 'result');

/**
 * Sends raw bytes, collects everything the service answers until it closes, until `enough(replies)`
 * holds, or `ms` passes — whichever comes first. Waiting on a condition, pass a long `ms`: it only
 * bounds a failure.
 */
export function rawExchange(
  socket: string,
  payload: Buffer | string,
  ms = 30_000,
  enough?: (replies: any[]) => boolean,
): Promise<{ replies: any[]; raw: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: socket });
    let raw = '';
    let closed = false;
    const parse = (text = raw) =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      clearTimeout(t);
      s.destroy();
      resolve({ replies: parse(), raw, closed });
    };
    const t = setTimeout(done, ms);
    s.on('connect', () => s.write(payload));
    s.on('data', (d) => {
      raw += d.toString('utf8');
      // only whole lines count: a reply may arrive in pieces
      if (enough && enough(parse(raw.slice(0, raw.lastIndexOf('\n') + 1)))) done();
    });
    s.on('close', () => {
      closed = true;
      done();
    });
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e)));
  });
}

export async function ping(socket: string): Promise<any | null> {
  try {
    // answered at once by a live service; the deadline only bounds a service that accepts and never answers
    const { replies } = await rawExchange(socket, '{"command":"ping"}\n', 30_000, hasResult);
    return replies.find((r) => r.type === 'result') ?? null;
  } catch {
    return null;
  }
}

/** Starts `hybrid-backup daemon` and waits until it answers a ping. */
export async function startDaemon(env: Record<string, string>, opts: { args?: string[]; timeoutMs?: number } = {}): Promise<Daemon> {
  const socket = env.HYBRID_BACKUP_SOCKET ?? `${env.BACKUP_DIR}/hybrid-backup.sock`;
  const proc = execa('node', [CLI, 'daemon', ...(opts.args ?? [])], { env: cliEnv(env), extendEnv: false, reject: false, all: true, cwd: '/tmp' });
  let out = '';
  proc.all!.on('data', (d: Buffer) => (out += d.toString()));
  const end = Date.now() + (opts.timeoutMs ?? 60_000); // bounds a failure only: a loaded machine starts Node slowly
  while (Date.now() < end) {
    if (proc.exitCode !== null) throw new Error(`the daemon exited early (${proc.exitCode}):\n${out}`);
    const r = await ping(socket);
    if (r?.ok && r.doc.pid === proc.pid) return { proc, socket, output: () => out };
    await sleep(50);
  }
  proc.kill('SIGKILL');
  throw new Error(`the daemon did not answer on ${socket}:\n${out}`);
}

export async function stopDaemon(d: Daemon, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | undefined> {
  if (d.proc.exitCode !== null || d.proc.signalCode !== null) return d.proc.exitCode ?? undefined;
  process.kill(d.proc.pid!, signal); // a plain signal: execa's kill() would add a SIGKILL after 5 s
  const r = await d.proc;
  return r.exitCode;
}
