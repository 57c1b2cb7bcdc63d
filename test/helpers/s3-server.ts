/**
 * A real S3 server for the tests: Ceph's RADOS Gateway (Debian's `radosgw`, 16.2), on a
 * one-monitor, one-OSD Ceph cluster that lives in a temp dir and in memory (memstore), with
 * authentication between the daemons off and everything on 127.0.0.1 at free ports. It checks
 * SigV4 signatures, and does multipart uploads, ListObjectsV2 paging, DeleteObjects, HeadObject
 * metadata and ACLs as a production S3 service does.
 *
 * Why not s3rver (npm): 3.7.1 does not check SigV4 signatures at all (a wrong secret passes),
 * its fork @20minutes/s3rver computes them wrongly for the SDK v3's bucket requests (every
 * CreateBucket, ListObjectsV2 and DeleteObjects fails), and both store aws-chunked framing as
 * object data. MinIO, Garage, SeaweedFS and versitygw are neither in Debian nor on npm.
 *
 * Needs: apt-get install --no-install-recommends radosgw ceph-mon ceph-osd (about 60 packages).
 * Ceph Pacific does not understand the SDK's default aws-chunked checksum trailers: clients use
 * `requestChecksumCalculation: 'WHEN_REQUIRED'` (S3Target's default with an endpoint).
 *
 * Starts in about 10–20 s; every daemon is a child of the test process and is ended by stop()
 * (or, failing that, when the process exits).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';

const run = promisify(execFile);

const BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph-authtool', 'ceph'];
export const S3_SERVER_INSTALL = 'apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd';

export interface S3Server {
  /** http://127.0.0.1:<port> — use path-style requests. */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The port, for a proxy in front. */
  port: number;
  /** Another user's credentials (for permission tests): it owns nothing and may read nothing of the first. */
  otherUser(): Promise<{ accessKeyId: string; secretAccessKey: string }>;
  /** Reclaims the space of deleted and overwritten objects now (the gateway waits 2 h by default). */
  reclaim(): Promise<void>;
  stop(): Promise<void>;
}

/** What is missing to run the server, or null. */
export function s3ServerMissing(): string | null {
  const dirs = (process.env.PATH ?? '/usr/bin').split(':');
  const missing = BINARIES.filter((b) => !dirs.some((d) => existsSync(path.join(d, b))));
  return missing.length ? `the S3 tests need Ceph's radosgw (${missing.join(', ')} not found): ${S3_SERVER_INSTALL}` : null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts a fresh cluster and gateway; `memoryBytes` caps what the in-memory OSD may hold (default 4 GiB). */
export async function startS3Server(opts: { memoryBytes?: number } = {}): Promise<S3Server> {
  const missing = s3ServerMissing();
  if (missing) throw new Error(missing);
  const dir = mkdtempSync('/tmp/hb-rgw-');
  const conf = path.join(dir, 'ceph.conf');
  const logs = path.join(dir, 'log');
  const children: ChildProcess[] = [];
  const killAll = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  process.once('exit', killAll);

  let stopping = false;
  const daemon = (name: string, args: string[]) => {
    const c = spawn(args[0]!, args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    c.once('exit', (code, sig) => {
      if (!stopping) writeFileSync(path.join(logs, `${name}.exit`), `exit ${code ?? sig}\n${err}`);
    });
    children.push(c);
    return c;
  };

  const stop = async () => {
    stopping = true;
    await Promise.all(
      children.reverse().map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const hard = setTimeout(() => c.kill('SIGKILL'), 10_000);
            c.once('exit', () => {
              clearTimeout(hard);
              resolve();
            });
            c.kill('SIGTERM');
          }),
      ),
    );
    process.removeListener('exit', killAll);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const [monPort, rgwPort] = [await freePort(), await freePort()];
    const fsid = randomUUID();
    for (const d of ['run', 'log', 'mon', 'osd0', 'rgw']) mkdirSync(path.join(dir, d));
    const modes = ['ms_cluster_mode', 'ms_service_mode', 'ms_client_mode', 'ms_mon_cluster_mode', 'ms_mon_service_mode', 'ms_mon_client_mode'];
    writeFileSync(
      conf,
      [
        '[global]',
        `fsid = ${fsid}`,
        `mon host = [v2:127.0.0.1:${monPort}]`,
        'auth cluster required = none',
        'auth service required = none',
        'auth client required = none',
        'auth allow insecure global id reclaim = true',
        // auth "none" cannot do msgr2's secure mode
        ...modes.map((m) => `${m} = crc`),
        'ms bind ipv6 = false',
        `run dir = ${dir}/run`,
        `admin socket = ${dir}/run/$name.asok`,
        `pid file = ${dir}/run/$name.pid`,
        `log file = ${dir}/log/$name.log`,
        `keyring = ${dir}/keyring`,
        `mon data = ${dir}/mon`,
        `osd data = ${dir}/osd$id`,
        'osd objectstore = memstore',
        `memstore device bytes = ${opts.memoryBytes ?? 4 * 1024 ** 3}`,
        'osd pool default size = 1',
        'osd pool default min size = 1',
        'osd pool default pg num = 8',
        'osd pool default pgp num = 8',
        'osd pool default pg autoscale mode = off',
        'osd crush chooseleaf type = 0',
        'mon allow pool size one = true',
        'mon warn on pool no redundancy = false',
        'mon max pg per osd = 1000',
        'mon data avail warn = 1',
        'mon data avail crit = 0',
        '',
        '[client.rgw]',
        `rgw data = ${dir}/rgw`,
        `rgw frontends = beast endpoint=127.0.0.1:${rgwPort}`,
        'rgw enable usage log = false',
        '',
      ].join('\n'),
    );
    await run('ceph-authtool', ['--create-keyring', `${dir}/keyring`, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']);
    await run('monmaptool', ['--create', '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, '--fsid', fsid, `${dir}/monmap`]);
    await run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', `${dir}/monmap`, '--keyring', `${dir}/keyring`]);
    daemon('mon', ['ceph-mon', '-c', conf, '-i', 'a', '-f']);
    await run('ceph', ['-c', conf, '--connect-timeout', '30', 'osd', 'create'], { timeout: 60_000 });
    await run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs'], { timeout: 60_000 });
    daemon('osd', ['ceph-osd', '-c', conf, '-i', '0', '-f']);
    const accessKeyId = `HB${randomBytes(9).toString('hex').toUpperCase()}`;
    const secretAccessKey = randomBytes(30).toString('base64url');
    // Creates the gateway's pools (waiting for the OSD) and the user.
    await run('radosgw-admin', ['-c', conf, 'user', 'create', '--uid=hb', '--display-name=hybrid-backup tests', `--access-key=${accessKeyId}`, `--secret-key=${secretAccessKey}`], { timeout: 120_000 });
    daemon('rgw', ['radosgw', '-c', conf, '-n', 'client.rgw', '-f']);
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    const deadline = Date.now() + 120_000;
    for (;;) {
      const ok = await fetch(endpoint, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`radosgw did not answer on ${endpoint} within 120 s:\n${tail(path.join(logs, 'client.rgw.log'))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    let others = 0;
    return {
      endpoint,
      region: 'us-east-1',
      accessKeyId,
      secretAccessKey,
      port: rgwPort,
      async otherUser() {
        const id = `HB${randomBytes(9).toString('hex').toUpperCase()}`;
        const secret = randomBytes(30).toString('base64url');
        await run('radosgw-admin', ['-c', conf, 'user', 'create', `--uid=other${++others}`, '--display-name=other', `--access-key=${id}`, `--secret-key=${secret}`], { timeout: 60_000 });
        return { accessKeyId: id, secretAccessKey: secret };
      },
      async reclaim() {
        await run('radosgw-admin', ['-c', conf, 'gc', 'process', '--include-all'], { timeout: 120_000 });
      },
      stop,
    };
  } catch (e) {
    const detail = ['mon.a.log', 'osd.0.log', 'client.rgw.log', 'mon.exit', 'osd.exit', 'rgw.exit']
      .filter((f) => existsSync(path.join(logs, f)))
      .map((f) => `--- ${f}\n${tail(path.join(logs, f), 8)}`)
      .join('\n');
    await stop();
    throw new Error(`cannot start the test S3 server (Ceph radosgw): ${(e as Error).message}\n${detail}`);
  }
}

/**
 * A plain SDK client of the server with its first user's credentials: for tests to look at (or
 * damage) what a target stored, the way the product itself does not.
 */
export function rawS3Client(rgw: S3Server): S3Client {
  return new S3Client({
    endpoint: rgw.endpoint,
    region: rgw.region,
    forcePathStyle: true,
    credentials: { accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}
