/**
 * The CLI side of the control socket: sends one request to a running service and relays its
 * progress and notices to the terminal. When nothing answers on the socket the caller runs the
 * command in-process instead.
 */
import net from 'node:net';
import type { Reporter } from '../context.js';
import { HbError } from '../domain/errors.js';
import type { ProgressEvent } from '../domain/types.js';
import { type Reply, replySchema, type Request } from '../service/protocol.js';

export type SocketOutcome = { answered: false } | { answered: true; result: Extract<Reply, { type: 'result' }> };

/** Connection errors that mean "no service here": fall back to running in-process. */
const NO_SERVICE = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'ENOTDIR']);

export function viaSocket(path: string, req: Request, reporter: Reporter, connectTimeoutMs = 2000): Promise<SocketOutcome> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ path });
    let connected = false;
    let settled = false;
    let buf = '';
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      f();
    };
    const timer = setTimeout(
      () => finish(() => reject(new HbError('socket-error', `the service on ${path} did not accept the connection within ${connectTimeoutMs} ms`, 'check the service (systemctl status hybrid-backup), or run with --direct'))),
      connectTimeoutMs,
    );
    sock.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      sock.write(`${JSON.stringify(req)}\n`);
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (!connected && e.code && NO_SERVICE.has(e.code)) return finish(() => resolve({ answered: false }));
      if (!connected && e.code === 'EACCES') {
        return finish(() => reject(new HbError('socket-error', `no permission to use the control socket ${path}`, 'run as the service\'s user (or a member of socket.group), or use --direct')));
      }
      finish(() => reject(new HbError('socket-error', `control socket ${path}: ${e.message}`)));
    });
    sock.on('close', () => finish(() => reject(new HbError('socket-error', 'the service closed the connection before answering', 'it may be stopping or have crashed; check `journalctl -u hybrid-backup`, or run with --direct'))));
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
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
        else return finish(() => resolve({ answered: true, result: reply }));
      }
    });
  });
}
