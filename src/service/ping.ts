/**
 * Asking whoever answers on a control socket who it is, for commands that run in-process while a
 * service may be running (`schedule --direct`). A leaf module: only the protocol's wire form.
 */
import net from 'node:net';
import { replySchema } from './protocol.js';

/** The service answering on `path` (its pid and start time), or null when none answers in time. */
export function pingService(path: string, timeoutMs = 1000): Promise<{ pid: number; startedAt: string } | null> {
  return new Promise((resolve) => {
    const sock = net.connect({ path });
    let buf = '';
    const done = (r: { pid: number; startedAt: string } | null) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    sock.once('connect', () => sock.write('{"command":"ping"}\n'));
    sock.once('error', () => done(null));
    sock.once('close', () => done(null));
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      try {
        const r = replySchema.parse(JSON.parse(buf.slice(0, nl)));
        const doc = r.type === 'result' && r.ok ? (r.doc as { pid?: unknown; startedAt?: unknown }) : null;
        done(doc && typeof doc.pid === 'number' && typeof doc.startedAt === 'string' ? { pid: doc.pid, startedAt: doc.startedAt } : null);
      } catch {
        done(null);
      }
    });
  });
}
