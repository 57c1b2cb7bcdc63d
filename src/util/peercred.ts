/**
 * Who is at the other end of a Unix socket connection, as the kernel says (SO_PEERCRED): Node.js
 * has no API for it, so a tiny native module (native/peercred.c, built by `npm ci`) asks. When it
 * was not built (no compiler), peers are unknown and said to be.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
  /** The user name, from /etc/passwd, when known. */
  user: string | null;
}

type Native = { peerCred(fd: number): { pid: number; uid: number; gid: number } };

let native: Native | null | undefined;

function load(): Native | null {
  if (native !== undefined) return native;
  const require = createRequire(import.meta.url);
  const here = path.dirname(fileURLToPath(import.meta.url));
  // dist/src/util → the package root is three up; src/util (tests) → two up
  for (const root of [path.resolve(here, '../../..'), path.resolve(here, '../..')]) {
    try {
      native = require(path.join(root, 'build/Release/peercred.node')) as Native;
      return native;
    } catch {
      // not there: the next candidate
    }
  }
  native = null;
  return native;
}

function userName(uid: number): string | null {
  try {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.split(':')[2] === String(uid));
    return line ? line.split(':')[0]! : null;
  } catch {
    return null;
  }
}

/** The peer of a connected Unix socket (`socket._handle.fd`), or null when it cannot be told. */
export function peerOf(socket: unknown): PeerCred | null {
  const n = load();
  const fd = (socket as { _handle?: { fd?: number } })?._handle?.fd;
  if (!n || typeof fd !== 'number' || fd < 0) return null;
  try {
    const c = n.peerCred(fd);
    return { ...c, user: userName(c.uid) };
  } catch {
    return null;
  }
}

/** `deploy (uid 1001, pid 4242)`, or `an unknown peer`. */
export function describePeer(p: PeerCred | null): string {
  return p ? `${p.user ?? 'uid'} (uid ${p.uid}, pid ${p.pid})` : 'an unknown peer (peer credentials unavailable)';
}
