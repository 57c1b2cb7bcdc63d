/**
 * A hostile PostgreSQL server for credential tests: it speaks just enough of the wire protocol to
 * ask every client for its password in cleartext, records what it is sent, and refuses the login.
 */
import net from 'node:net';

export class PasswordTrap {
  /** Every password a client sent (empty when it sent an empty one). */
  readonly passwords: string[] = [];
  /** Connections that reached the startup message. */
  connections = 0;
  port = 0;
  private server!: net.Server;

  async start(): Promise<this> {
    this.server = net.createServer((sock) => this.serve(sock));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private serve(sock: net.Socket): void {
    let buf = Buffer.alloc(0);
    let stage: 'startup' | 'password' = 'startup';
    sock.on('error', () => {});
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (stage === 'startup') {
          if (buf.length < 8) return;
          const len = buf.readInt32BE(0);
          if (buf.length < len) return;
          const code = buf.readInt32BE(4);
          buf = buf.subarray(len);
          if (code === 80877103 || code === 80877104) {
            sock.write('N'); // no SSL, no GSS: go on in the clear
            continue;
          }
          this.connections++;
          stage = 'password';
          const ask = Buffer.alloc(9);
          ask.write('R', 0);
          ask.writeInt32BE(8, 1);
          ask.writeInt32BE(3, 5); // AuthenticationCleartextPassword
          sock.write(ask);
          continue;
        }
        if (buf.length < 5) return;
        const len = buf.readInt32BE(1);
        if (buf.length < len + 1) return;
        if (buf[0] === 0x70 /* p */) this.passwords.push(buf.subarray(5, len).toString('utf8').replace(/\0$/, ''));
        buf = buf.subarray(len + 1);
        const fields = Buffer.from('SFATAL\0C28P01\0Mpassword authentication failed\0\0');
        const err = Buffer.alloc(5);
        err.write('E', 0);
        err.writeInt32BE(fields.length + 4, 1);
        sock.end(Buffer.concat([err, fields]));
        return;
      }
    });
  }
}
