/**
 * The service's control socket: a Unix stream socket speaking the NDJSON protocol of
 * ./protocol.ts.
 *
 * Guarantees: every request line is validated; a malformed, oversized or non-UTF-8 line gets an
 * error result and the connection is closed; idle clients are disconnected; a client that
 * vanishes mid-request does not disturb the work it started (replies to it are dropped). The
 * socket file is 0600 (0660 with a group). A stale socket file is replaced; a live service on
 * the path is refused. With systemd socket activation the inherited descriptor is used instead.
 */
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import type { Reporter } from '../context.js';
import { ERROR_CATALOGUE, type ErrorCode, HbError } from '../domain/errors.js';
import { redact } from '../util/redact.js';
import type { Logger } from '../log/logger.js';
import { MAX_REQUEST_BYTES, type Reply, type Request, requestSchema } from './protocol.js';
import { describePeer, type PeerCred, peerOf } from '../util/peercred.js';
import { serializeWithRaw } from '../util/raw-json.js';
import { socketActivationEnv } from '../config/environment.js';

export type RequestHandler = (req: Request, reporter: Reporter) => Promise<Extract<Reply, { type: 'result' }>>;

export interface SocketServerOptions {
  path: string;
  group?: string;
  idleTimeoutMs: number;
  maxConnections: number;
  /** The most time a client may take to send a whole request line, from connecting or its last reply. */
  requestTimeoutMs?: number;
  /** The most reply bytes queued for a client that does not read them; beyond, it is dropped. */
  maxQueuedBytes?: number;
  /** How often a client waiting for a reply is told the service is alive. */
  heartbeatMs?: number;
  handler: RequestHandler;
  log: Logger;
  env?: NodeJS.ProcessEnv;
}

/** Longest Unix socket path the kernel accepts (sun_path is 108 bytes with the NUL). */
export const MAX_SOCKET_PATH = 107;

/** An error reply, its exit code from the catalogue. */
function errorResult(id: string | undefined, code: ErrorCode, message: string, hint?: string): Extract<Reply, { type: 'result' }> {
  return { type: 'result', id, ok: false, exitCode: ERROR_CATALOGUE[code].exit, error: hint ? { code, message, hint } : { code, message } };
}

/**
 * The first key that could reach an object's prototype (`__proto__`, `constructor`, `prototype`),
 * anywhere in a parsed request: such a request is refused whole, never half-understood.
 */
export function poisonedKey(v: unknown, depth = 0): string | null {
  if (v === null || typeof v !== 'object' || depth > 32) return null;
  for (const k of Object.keys(v)) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') return k;
    const inner = poisonedKey((v as Record<string, unknown>)[k], depth + 1);
    if (inner) return inner;
  }
  return null;
}

/** The gid of a group name, from /etc/group. */
export function groupId(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  const line = readFileSync('/etc/group', 'utf8')
    .split('\n')
    .find((l) => l.split(':')[0] === name);
  if (!line) throw new HbError('config-invalid', `invalid configuration: socket.group "${name}" is not a group on this system`, 'create the group (groupadd) or set socket.group to an existing one');
  return Number(line.split(':')[2]);
}

/** The listening descriptor systemd passed, if this process was socket-activated. */
export function activationFd(env: NodeJS.ProcessEnv): number | null {
  if (env.LISTEN_PID !== String(process.pid)) return null;
  const n = Number(env.LISTEN_FDS ?? 0);
  return n >= 1 ? 3 : null; // SD_LISTEN_FDS_START
}

/** Probes a socket path: 'live' when something accepts connections there, 'stale' when a dead socket file remains, 'absent'. */
export function probeSocket(path: string, timeoutMs = 1000): Promise<'live' | 'stale' | 'absent'> {
  return new Promise((resolve) => {
    const s = net.connect({ path });
    const done = (r: 'live' | 'stale' | 'absent') => {
      s.destroy();
      resolve(r);
    };
    s.setTimeout(timeoutMs, () => done('live')); // accepted but silent is still someone's socket
    s.once('connect', () => done('live'));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ENOENT' ? 'absent' : e.code === 'ECONNREFUSED' ? 'stale' : 'live'));
  });
}

/** Requests one connection may queue behind the one being answered. */
const MAX_PIPELINED = 8;

export class ControlServer {
  private server: net.Server | null = null;
  private readonly conns = new Set<net.Socket>();
  /** Connections with a request being answered (the others are only connected, or sending). */
  private readonly working = new Set<net.Socket>();
  /** Who is at the other end of each connection, when the kernel could say. */
  private readonly peers = new Map<net.Socket, PeerCred>();
  private activated = false;
  private closing = false;

  constructor(private readonly opts: SocketServerOptions) {}

  /** Where clients connect. */
  get path(): string {
    return this.opts.path;
  }

  /**
   * Starts listening.
   * @throws HbError `service-running` (exit 2) when a live service already answers on the path.
   */
  async listen(): Promise<void> {
    const env = this.opts.env ?? socketActivationEnv();
    const server = net.createServer((sock) => this.accept(sock));
    server.on('error', (e) => this.opts.log.error(`control socket error: ${e.message}`));
    const fd = activationFd(env);
    if (fd !== null) {
      this.activated = true;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ fd }, () => resolve());
      });
      delete env.LISTEN_PID;
      delete env.LISTEN_FDS;
      delete env.LISTEN_FDNAMES;
      this.opts.log.info('listening on the socket systemd passed (socket activation)');
    } else {
      const p = this.opts.path;
      if (Buffer.byteLength(p) > MAX_SOCKET_PATH) {
        throw new HbError('config-invalid', `invalid configuration: the socket path ${p} is ${Buffer.byteLength(p)} bytes, longer than the ${MAX_SOCKET_PATH} a Unix socket allows`, 'set HYBRID_BACKUP_SOCKET (or socket.path) to a shorter path, e.g. /run/hybrid-backup/control.sock');
      }
      let st;
      try {
        st = await fs.lstat(p);
      } catch {
        st = null;
      }
      if (st && !st.isSocket()) {
        throw new HbError('config-invalid', `invalid configuration: ${p} exists and is not a socket`, 'remove it or choose another HYBRID_BACKUP_SOCKET');
      }
      const gid = this.opts.group ? groupId(this.opts.group) : null; // before anything is created
      if (st) {
        const state = await probeSocket(p);
        if (state === 'live') {
          throw new HbError('service-running', `a hybrid-backup service already answers on ${p}`, 'stop it first (systemctl stop hybrid-backup), or give this one another HYBRID_BACKUP_SOCKET and BACKUP_DIR');
        }
        await fs.rm(p, { force: true });
        this.opts.log.warn(`removed a stale control socket left at ${p}`);
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ path: p, backlog: 128 }, () => resolve());
      });
      // Clients are answered from now on, so a stop from now on must close it and remove the file.
      this.server = server;
      if (gid !== null) {
        await fs.chown(p, -1, gid);
        await fs.chmod(p, 0o660);
      } else {
        await fs.chmod(p, 0o600);
      }
      this.opts.log.info(`listening on ${p}`);
    }
    this.server = server;
  }

  private accept(sock: net.Socket): void {
    const log = this.opts.log;
    sock.on('error', (e) => log.debug(`control client error: ${e.message}`));
    // Who asks, as the kernel says: logged with each request, and no other user may hold more
    // than a quarter of the connections.
    const peer = peerOf(sock);
    const send = (r: Reply) => {
      if (sock.destroyed || !sock.writable) return;
      // A client that does not read its replies is not allowed to make the service hold them.
      if (sock.writableLength > (this.opts.maxQueuedBytes ?? 32 * 1024 * 1024)) {
        log.warn(`dropping a control client that does not read its replies (${sock.writableLength} bytes waiting)`);
        sock.destroy();
        return;
      }
      // A cached list goes out as its cached bytes, not re-encoded into one new 5 MB string.
      const parts = serializeWithRaw(r);
      sock.cork();
      for (const p of parts) sock.write(p);
      sock.write('\n');
      sock.uncork(); // now, not on the next tick: a shutdown may close the socket right after
    };
    /**
     * Resolves once what was sent has left (or the client is gone): one reply in flight at a time.
     * A client that does not read its reply within the idle timeout is dropped.
     */
    const drained = () =>
      new Promise<void>((resolve) => {
        if (sock.destroyed || sock.writableLength === 0) return resolve();
        const stuck = setTimeout(() => {
          log.warn(`dropping a control client that does not read its reply (${sock.writableLength} bytes waiting)`);
          sock.destroy();
        }, this.opts.idleTimeoutMs);
        const done = () => (clearTimeout(stuck), sock.off('drain', done), sock.off('close', done), resolve());
        sock.once('drain', done);
        sock.once('close', done);
      });
    if (this.closing) {
      send(errorResult(undefined, 'service-stopping', 'the service is shutting down', 'try again once it is back, or use --direct'));
      sock.end();
      return;
    }
    if (this.conns.size >= this.opts.maxConnections) {
      // Full: the oldest client that has not sent a whole request yet makes room. Clients that
      // trickle bytes to hold connections (slowloris) cannot keep others out.
      const idle = [...this.conns].find((c) => !this.working.has(c));
      if (idle) {
        log.warn('control socket full: dropping the oldest client that has not sent a request, to admit a new one');
        idle.destroy();
        this.conns.delete(idle);
      } else {
        send(errorResult(undefined, 'socket-busy', `the service is answering ${this.conns.size} requests, its limit`, 'try again shortly'));
        sock.end();
        return;
      }
    }
    if (peer && peer.uid !== process.getuid?.()) {
      const mine = [...this.peers.values()].filter((p) => p.uid === peer.uid).length;
      const cap = Math.max(1, Math.floor(this.opts.maxConnections / 4));
      if (mine >= cap) {
        log.warn(`refusing a control connection from ${describePeer(peer)}: it already has ${mine} open, its limit`);
        send(errorResult(undefined, 'socket-busy', `you already have ${mine} connections to the service, the most one user may hold`, 'close the others, or try again shortly'));
        sock.end();
        return;
      }
    }
    this.conns.add(sock);
    if (peer) this.peers.set(sock, peer);
    sock.once('close', () => {
      this.conns.delete(sock);
      this.working.delete(sock);
      this.peers.delete(sock);
    });
    const requestTimeoutMs = this.opts.requestTimeoutMs ?? 10_000;
    // A whole request line within requestTimeoutMs of connecting (or of the last reply), however
    // the bytes trickle in: the deadline is not reset by each byte.
    let lineDeadline: NodeJS.Timeout | undefined;
    const armLineDeadline = () => {
      clearTimeout(lineDeadline);
      lineDeadline = setTimeout(() => {
        if (this.working.has(sock)) return;
        log.debug('closing a control client that sent no whole request in time');
        sock.destroy();
      }, requestTimeoutMs);
      lineDeadline.unref();
    };
    armLineDeadline();
    sock.once('close', () => clearTimeout(lineDeadline));

    let pending: Buffer[] = [];
    let pendingLen = 0;
    const lines: Buffer[] = [];
    let busy = false;
    const decoder = new TextDecoder('utf-8', { fatal: true });

    sock.setTimeout(this.opts.idleTimeoutMs, () => {
      if (!busy) {
        log.debug('closing an idle control client');
        sock.destroy();
      }
    });

    const reject = (code: ErrorCode, message: string) => {
      send(errorResult(undefined, code, message, 'send one JSON request per line: {"command": "list", "args": {}}'));
      sock.end();
      sock.pause();
      lines.length = 0;
      pending = [];
      // a client that does not read even the error is not waited for
      setTimeout(() => sock.destroy(), 2_000).unref();
    };

    const next = async () => {
      if (busy) return;
      busy = true;
      this.working.add(sock);
      clearTimeout(lineDeadline);
      try {
        while (lines.length && !sock.destroyed) {
          const raw = lines.shift()!;
          let parsed: unknown;
          try {
            parsed = JSON.parse(decoder.decode(raw));
          } catch {
            return reject('socket-protocol', 'the request is not valid UTF-8 JSON');
          }
          const poisoned = poisonedKey(parsed);
          if (poisoned) return reject('socket-protocol', `invalid request: the key ${JSON.stringify(poisoned)} is not allowed anywhere in a request`);
          const r = requestSchema.safeParse(parsed);
          if (!r.success) {
            const i = r.error.issues[0]!;
            return reject('socket-protocol', `invalid request: ${i.path.join('.') || 'request'}: ${i.message}`);
          }
          const id = r.data.id;
          if (r.data.command !== 'ping') log.info(`control request ${r.data.command} from ${describePeer(peer)}`);
          const reporter: Reporter = {
            progress: (e) => send({ type: 'progress', id, ...e }),
            notice: (message) => send({ type: 'notice', id, message }),
          };
          let result: Extract<Reply, { type: 'result' }>;
          // A client waiting for a long reply hears the service is alive (it gives up on silence).
          const heartbeat = setInterval(() => send({ type: 'alive', id }), this.opts.heartbeatMs ?? 5_000);
          try {
            result = await this.opts.handler(r.data, reporter);
          } catch (e) {
            log.error(`control request ${r.data.command} failed unexpectedly: ${(e as Error).stack ?? e}`);
            result = errorResult(id, 'internal', redact((e as Error).message));
          } finally {
            clearInterval(heartbeat);
          }
          send({ ...result, id });
          await drained();
        }
      } finally {
        busy = false;
        this.working.delete(sock);
        if (!sock.destroyed) armLineDeadline();
      }
    };

    sock.on('data', (chunk: Buffer) => {
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
        const piece = chunk.subarray(start, nl);
        if (pendingLen + piece.length > MAX_REQUEST_BYTES) return reject('socket-protocol', `the request line is longer than ${MAX_REQUEST_BYTES} bytes`);
        const line = pendingLen ? Buffer.concat([...pending, piece]) : Buffer.from(piece);
        pending = [];
        pendingLen = 0;
        if (line.length && !(line.length === 1 && line[0] === 0x0d)) lines.push(line);
        // Requests queued behind the one in flight are bounded: a client may pipeline a few, not flood.
        if (lines.length > MAX_PIPELINED) {
          log.warn(`dropping a control client that sent more than ${MAX_PIPELINED} requests without waiting for the replies`);
          return reject('socket-protocol', `more than ${MAX_PIPELINED} requests sent without waiting for the replies`);
        }
        start = nl + 1;
      }
      const rest = chunk.subarray(start);
      if (rest.length) {
        if (pendingLen + rest.length > MAX_REQUEST_BYTES) return reject('socket-protocol', `the request line is longer than ${MAX_REQUEST_BYTES} bytes`);
        pending.push(Buffer.from(rest));
        pendingLen += rest.length;
      }
      void next();
    });
  }

  /** Stops accepting connections; clients still connected get `service-stopping` for new requests. */
  stopAccepting(): void {
    this.closing = true;
    this.server?.close();
  }

  /** Closes every connection and removes the socket file (not systemd's). Safe to call twice. */
  async close(): Promise<void> {
    this.stopAccepting();
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    if (this.server && !this.activated) await fs.rm(this.opts.path, { force: true });
    this.server = null;
  }
}
