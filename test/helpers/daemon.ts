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

/** Sends raw bytes, collects everything the service answers until it closes (or `ms` passes). */
export function rawExchange(socket: string, payload: Buffer | string, ms = 3000): Promise<{ replies: any[]; raw: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: socket });
    let raw = '';
    let closed = false;
    const done = () => {
      clearTimeout(t);
      s.destroy();
      const replies = raw
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l));
      resolve({ replies, raw, closed });
    };
    const t = setTimeout(done, ms);
    s.on('connect', () => s.write(payload));
    s.on('data', (d) => (raw += d.toString('utf8')));
    s.on('close', () => {
      closed = true;
      done();
    });
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e)));
  });
}

export async function ping(socket: string): Promise<any | null> {
  try {
    const { replies } = await rawExchange(socket, '{"command":"ping"}\n', 1000);
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
  const end = Date.now() + (opts.timeoutMs ?? 15_000);
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
