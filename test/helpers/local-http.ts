/** The fakes' HTTP servers: listening on a free port of 127.0.0.1, and closed with every connection. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Starts `server` on a free local port and returns its base URL. */
export async function listenLocal(server: http.Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Closes `server` now, keep-alive connections included. */
export async function closeNow(server: http.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}
