/**
 * A private PostgreSQL cluster with password authentication, for the wrong-password path (the
 * shared server trusts every local connection). Started with the real initdb and pg_ctl.
 */
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { realPgBin } from './pgbin.js';

export interface PrivateCluster {
  port: number;
  password: string;
  url(user: string, password: string, db?: string): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startPrivateCluster(): Promise<PrivateCluster> {
  const bin = await realPgBin();
  const dir = mkdtempSync('/tmp/hbpc-');
  const password = 'right-horse-battery';
  writeFileSync(path.join(dir, 'pw'), `${password}\n`);
  const asRoot = process.getuid?.() === 0;
  let run = (cmd: string, args: string[]) => execa(cmd, args);
  if (asRoot) {
    const uid = Number((await execa('id', ['-u', 'postgres'])).stdout);
    const gid = Number((await execa('id', ['-g', 'postgres'])).stdout);
    chownSync(dir, uid, gid);
    chownSync(path.join(dir, 'pw'), uid, gid);
    run = (cmd, args) => execa('runuser', ['-u', 'postgres', '--', cmd, ...args]);
  }
  chmodSync(dir, 0o700);
  const data = path.join(dir, 'data');
  await run(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth-host=scram-sha-256', '--auth-local=trust', `--pwfile=${path.join(dir, 'pw')}`, '-E', 'UTF8', '--no-sync']);
  const port = await freePort();
  await run(path.join(bin, 'pg_ctl'), ['-D', data, '-l', path.join(dir, 'log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  return {
    port,
    password,
    url: (user, pw, db = 'postgres') => `postgresql://${encodeURIComponent(user)}:${encodeURIComponent(pw)}@127.0.0.1:${port}/${db}`,
    async stop() {
      await run(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
