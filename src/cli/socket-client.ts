/**
 * The CLI side of the control socket: sends one request to a running service and relays its
 * progress and notices to the terminal. When nothing answers on the socket the caller runs the
 * command in-process instead.
 *
 * Guarantees: nothing is sent to a socket another user could have put there (see
 * {@link assertTrustedSocket}); a service that stops answering (stopped, hung) is given up on after
 * `replyTimeoutMs` without a byte — its heartbeats and progress count as life — and said so.
 */
import { lstatSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Reporter } from '../context.js';
import { HbError } from '../domain/errors.js';
import type { ProgressEvent } from '../domain/types.js';
import { type Reply, replySchema, type Request } from '../service/protocol.js';

export type SocketOutcome = { answered: false } | { answered: true; result: Extract<Reply, { type: 'result' }> };

/** Connection errors that mean "no service here": fall back to running in-process. */
const NO_SERVICE = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'ENOTDIR']);

export interface ClientOptions {
  connectTimeoutMs?: number;
  /** Give up when the service sends nothing at all for this long. */
  replyTimeoutMs?: number;
  /** The uid to trust besides root (the current user's). */
  uid?: number;
}

/**
 * Refuses a control socket another user could have bound, as OpenSSH refuses a control socket:
 * the socket must be a socket (not a link), owned by this user, root, or the owner of its
 * directory; and the directory must be writable by no one else (group and others), unless it is
 * sticky (like /tmp) and the socket is this user's or root's.
 * Absent is fine: there is no service, and nothing is sent.
 * @throws HbError `socket-untrusted`
 */
export function assertTrustedSocket(socketPath: string, uid = process.getuid?.() ?? 0): void {
  let sock;
  try {
    sock = lstatSync(socketPath);
  } catch {
    return;
  }
  const dir = path.dirname(socketPath);
  const d = lstatSync(dir, { throwIfNoEntry: false });
  const refuse = (why: string) => {
    throw new HbError('socket-untrusted', `refusing to use the control socket ${socketPath}: ${why}`, 'put the socket in a directory only the service\'s user (or root) can write, e.g. /run/hybrid-backup (socket.path or HYBRID_BACKUP_SOCKET); or run with --direct');
  };
  if (!sock.isSocket()) return; // not a socket: connecting fails (ENOTSOCK) and the command runs in-process
  if (!d || !d.isDirectory()) refuse(`its directory ${dir} is not a directory`);
  const trustedOwner = (owner: number) => owner === uid || owner === 0;
  if (!trustedOwner(d!.uid) && d!.uid !== sock.uid) refuse(`its directory ${dir} belongs to another user (uid ${d!.uid})`);
  const othersWrite = (d!.mode & 0o022) !== 0;
  const sticky = (d!.mode & 0o1000) !== 0;
  if (othersWrite && !(sticky && trustedOwner(sock.uid))) {
    refuse(`its directory ${dir} is writable by other users (mode ${(d!.mode & 0o7777).toString(8)}), so anyone could have put a socket there`);
  }
  if (!trustedOwner(sock.uid) && sock.uid !== d!.uid) refuse(`it belongs to another user (uid ${sock.uid})`);
}

export function viaSocket(socketPath: string, req: Request, reporter: Reporter, opts: ClientOptions = {}): Promise<SocketOutcome> {
  const connectTimeoutMs = opts.connectTimeoutMs ?? 2000;
  const replyTimeoutMs = opts.replyTimeoutMs ?? 60_000;
  assertTrustedSocket(socketPath, opts.uid);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ path: socketPath });
    let connected = false;
    let settled = false;
    let buf = '';
    let silence: NodeJS.Timeout | undefined;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(silence);
      sock.destroy();
      f();
    };
    const listen = () => {
      clearTimeout(silence);
      silence = setTimeout(
        () =>
          finish(() =>
            reject(
              new HbError(
                'service-not-answering',
                `the service on ${socketPath} has sent nothing for ${Math.round(replyTimeoutMs / 1000)} s (no reply, no progress): it is not answering`,
                'it may be stopped (SIGSTOP) or hung: check `systemctl status hybrid-backup` and `journalctl -u hybrid-backup`; or run with --direct',
              ),
            ),
          ),
        replyTimeoutMs,
      );
    };
    const timer = setTimeout(
      () => finish(() => reject(new HbError('socket-error', `the service on ${socketPath} did not accept the connection within ${connectTimeoutMs} ms`, 'check the service (systemctl status hybrid-backup), or run with --direct'))),
      connectTimeoutMs,
    );
    sock.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      listen();
      sock.write(`${JSON.stringify(req)}\n`);
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (!connected && e.code && NO_SERVICE.has(e.code)) return finish(() => resolve({ answered: false }));
      if (!connected && e.code === 'EACCES') {
        return finish(() => reject(new HbError('socket-error', `no permission to use the control socket ${socketPath}`, 'run as the service\'s user (or a member of socket.group), or use --direct')));
      }
      finish(() => reject(new HbError('socket-error', `control socket ${socketPath}: ${e.message}`)));
    });
    sock.on('close', () => finish(() => reject(new HbError('socket-error', 'the service closed the connection before answering', 'it may be stopping or have crashed; check `journalctl -u hybrid-backup`, or run with --direct'))));
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      listen();
      buf += chunk;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let reply: Reply;
        try {
          reply = replySchema.parse(JSON.parse(line)) as Reply;
        } catch {
          return finish(() => reject(new HbError('socket-error', 'the service sent something that is not a protocol reply')));
        }
        if (reply.type === 'progress') {
          const { type: _t, id: _i, ...e } = reply;
          reporter.progress(e as ProgressEvent);
        } else if (reply.type === 'notice') reporter.notice(reply.message);
        else if (reply.type === 'result') return finish(() => resolve({ answered: true, result: reply }));
      }
    });
  });
}
