/**
 * Throwaway PostgreSQL clusters with the real initdb and postgres: one starts, answers on its Unix
 * socket only, takes roles and databases, and is gone after stop(); a missing major names the
 * server package; a failed or aborted start leaves nothing; and the clusters of a SIGKILLed Node
 * process — postmaster still running or not — are stopped and removed by removeLeftoverClusters(),
 * which never touches a directory that is not a dead owner's.
 */
import { execSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HbError } from '../../src/domain/errors.js';
import { withClient } from '../../src/pg/server.js';
import { removeLeftoverClusters, startThrowawayCluster, type ThrowawayCluster } from '../../src/pg/throwaway.js';
import { selfIdentity } from '../../src/util/process.js';
import { ROOT } from '../helpers/cli.js';
import { getServerMajor } from '../helpers/pgbin.js';
import { until } from '../helpers/wait.js';

const MODULE = path.join(ROOT, 'dist/src/pg/throwaway.js');
const asRoot = process.getuid?.() === 0;

let major: number;
const parents: string[] = [];
const clusters: ThrowawayCluster[] = [];

beforeAll(async () => {
  major = await getServerMajor();
});
afterAll(async () => {
  for (const c of clusters) await c.stop().catch(() => {});
  for (const p of parents) {
    await removeLeftoverClusters(p).catch(() => {});
    rmSync(p, { recursive: true, force: true });
  }
});

/** A unique, short parent directory that the server's user (postgres, when we are root) can reach. */
function parentDir(): string {
  const dir = mkdtempSync('/tmp/hbtw-');
  chmodSync(dir, 0o755);
  parents.push(dir);
  return dir;
}

/** Whether a pid runs (a zombie does not: an orphan's new parent may never reap it). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

/** Live processes whose working directory is `dir` or under it (also after it was deleted). */
function processesUnder(dir: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cwd = readlinkSync(`/proc/${p}/cwd`).replace(/ \(deleted\)$/, '');
      if ((cwd === dir || cwd.startsWith(`${dir}/`)) && running(Number(p))) out.push(Number(p));
    } catch {
      // gone or a zombie
    }
  }
  return out;
}

/** The children of a process (the postmaster's backends and auxiliary processes). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

/** Inodes of the TCP sockets listening in this network namespace. */
function tcpListenInodes(): Set<string> {
  const inodes = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(f)) continue;
    for (const line of readFileSync(f, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A') inodes.add(cols[9]!); // st 0A = LISTEN
    }
  }
  return inodes;
}

function socketInodesOf(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`)
    .map((fd) => {
      try {
        return /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
      } catch {
        return undefined;
      }
    })
    .filter((x): x is string => x !== undefined);
}

async function expectHbError(p: Promise<unknown>, code: string): Promise<HbError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HbError);
  expect((e as HbError).code, (e as HbError).message).toBe(code);
  return e as HbError;
}

/**
 * Starts a cluster in a child Node process (the built module), prints its directory and
 * postmaster pid, and waits to be killed.
 */
async function clusterInChild(parent: string, dieWithParent: boolean): Promise<{ child: ReturnType<typeof execa>; dir: string; pid: number }> {
  const script = `
    import { startThrowawayCluster } from ${JSON.stringify(MODULE)};
    const c = await startThrowawayCluster({ major: ${major}, parentDir: ${JSON.stringify(parent)}, dieWithParent: ${dieWithParent} });
    process.stdout.write(JSON.stringify({ dir: c.dir, pid: c.pid }) + '\\n');
    setInterval(() => {}, 60_000);
  `;
  const child = execa('node', ['--input-type=module', '-e', script], { reject: false, buffer: false });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.stderr!.on('data', (d: Buffer) => process.stderr.write(d));
    child.once('exit', (code) => reject(new Error(`the child exited (${code}) before its cluster started`)));
  });
  const { dir, pid } = JSON.parse(line) as { dir: string; pid: number };
  return { child, dir, pid };
}

describe('throwaway PostgreSQL', () => {
  it('starts on a Unix socket only, takes a role and a database, and stop() removes it all', async () => {
    const parent = parentDir();
    const logs: string[] = [];
    const c = await startThrowawayCluster({ major, parentDir: parent, log: (m) => logs.push(m) });
    clusters.push(c);
    expect(c.major).toBe(major);
    expect(path.dirname(c.dir)).toBe(parent);
    expect(path.basename(c.dir)).toMatch(/^hb-drill-/);
    expect(c.socketDir).toBe(c.dir);
    expect(c.conn).toMatchObject({ host: c.dir, user: 'postgres', database: 'postgres' });
    expect(existsSync(path.join(c.dir, `.s.PGSQL.${c.conn.port}`))).toBe(true);
    expect(lstatSync(c.dir).mode & 0o777).toBe(0o700);
    const marker = JSON.parse(readFileSync(path.join(c.dir, 'owner.json'), 'utf8'));
    expect(marker.owner).toEqual(selfIdentity());
    expect(logs.some((l) => /ready on .* in \d+ ms/.test(l))).toBe(true);

    const info = await withClient(c.conn, { connectTimeoutSeconds: 5 }, async (cl) => {
      const r = await cl.query<Record<string, string>>(
        `select current_setting('listen_addresses') as listen, current_setting('server_version_num') as num, current_user as usr,
                current_setting('fsync') as fsync, current_setting('wal_level') as wal, current_setting('max_connections') as maxconn,
                current_setting('unix_socket_permissions') as perms, (select rolsuper::text from pg_roles where rolname = current_user) as super`,
      );
      await cl.query(`create role drill_owner login`);
      await cl.query(`create database drill_db owner drill_owner`);
      return r.rows[0]!;
    });
    expect(info).toEqual({ listen: '', num: expect.stringMatching(new RegExp(`^${major}\\d{4}$`)), usr: 'postgres', fsync: 'off', wal: 'minimal', maxconn: '20', perms: '0700', super: 'true' });

    // The new role, in the new database, over the same socket (trust).
    const rows = await withClient({ ...c.conn, user: 'drill_owner', database: 'drill_db' }, { connectTimeoutSeconds: 5 }, async (cl) => {
      await cl.query(`create table t (id int primary key); insert into t select generate_series(1, 50)`);
      return (await cl.query<{ n: string; db: string; usr: string }>(`select count(*)::text as n, current_database() as db, current_user as usr from t`)).rows[0];
    });
    expect(rows).toEqual({ n: '50', db: 'drill_db', usr: 'drill_owner' });

    // A PGSSLMODE meant for the production server does not leak into connections to it.
    const before = process.env.PGSSLMODE;
    process.env.PGSSLMODE = 'require';
    try {
      expect(await withClient(c.conn, { connectTimeoutSeconds: 5 }, async (cl) => (await cl.query('select 1 as one')).rows[0])).toEqual({ one: 1 });
    } finally {
      if (before === undefined) delete process.env.PGSSLMODE;
      else process.env.PGSSLMODE = before;
    }

    // No TCP listener among the postmaster's sockets.
    const listening = tcpListenInodes();
    expect(socketInodesOf(c.pid).filter((i) => listening.has(i))).toEqual([]);
    if (asRoot) expect(lstatSync(path.join(c.dir, 'data')).uid).not.toBe(0);

    const children = childrenOf(c.pid);
    expect(children.length).toBeGreaterThan(0);
    await c.stop();
    expect(existsSync(c.dir)).toBe(false);
    expect(running(c.pid)).toBe(false);
    expect(children.filter(running)).toEqual([]);
    await c.stop(); // idempotent
    expect(readdirSync(parent)).toEqual([]);
  });

  it('a major that is not installed: pg-tool-not-found naming the server package; nothing created', async () => {
    const parent = parentDir();
    const e = await expectHbError(startThrowawayCluster({ major: 99, parentDir: parent }), 'pg-tool-not-found');
    expect(e.message).toMatch(/PostgreSQL 99/);
    expect(e.hint).toMatch(/apt install postgresql-99\b/);
    expect(e.hint).toMatch(/postgresql99-server/);
    // pgBinDir holding another major: refused, naming what it holds.
    const other = await expectHbError(startThrowawayCluster({ major: major + 1, parentDir: parent, pgBinDir: `/usr/lib/postgresql/${major}/bin` }), 'pg-tool-not-found');
    expect(other.message).toContain(`found PostgreSQL ${major} in /usr/lib/postgresql/${major}/bin`);
    expect(readdirSync(parent)).toEqual([]);
  });

  it('a server that fails to start: restore-test-failed with the log tail; the directory is removed', async () => {
    const parent = parentDir();
    const e = await expectHbError(startThrowawayCluster({ major, parentDir: parent, settings: { shared_buffers: 'lots' } }), 'restore-test-failed');
    expect(e.message).toMatch(/server log: .*shared_buffers/);
    expect(e.hint).toBeTruthy();
    expect(readdirSync(parent)).toEqual([]);
    // Settings that would open the server up are refused before anything starts.
    await expectHbError(startThrowawayCluster({ major, parentDir: parent, settings: { listen_addresses: '*' } }), 'config-invalid');
    expect(readdirSync(parent)).toEqual([]);
  });

  it('an abort during initdb stops it and removes the directory', async () => {
    const parent = parentDir();
    const ac = new AbortController();
    const p = startThrowawayCluster({ major, parentDir: parent, signal: ac.signal, log: (m) => m.startsWith('initdb') && ac.abort() });
    await expectHbError(p, 'aborted');
    expect(readdirSync(parent)).toEqual([]);
    // initdb's process group got SIGKILL; its delivery is asynchronous.
    await until(() => processesUnder(parent).length === 0, 'no process to run under the parent directory', 60_000);
  });

  it('a socket path over the limit is refused before anything is created', async () => {
    const parent = parentDir();
    const deep = path.join(parent, 'x'.repeat(60), 'y'.repeat(30));
    mkdirSync(deep, { recursive: true });
    const e = await expectHbError(startThrowawayCluster({ major, parentDir: deep }), 'restore-test-failed');
    expect(e.message).toMatch(/socket path .* over the 107-byte limit/);
    expect(readdirSync(deep)).toEqual([]);
  });

  it('as root, a parent directory the server user cannot reach is refused up front', async () => {
    // Only root hands the throwaway server to another user (postgres or nobody); .ci/run runs as root.
    expect(asRoot, 'this test needs root: run the suite as root, as .ci/run does').toBe(true);
    const parent = parentDir();
    const closed = path.join(parent, 'closed');
    mkdirSync(closed, { mode: 0o700 });
    const e = await expectHbError(startThrowawayCluster({ major, parentDir: closed }), 'restore-test-failed');
    expect(e.message).toMatch(/cannot reach/);
    expect(readdirSync(closed)).toEqual([]);
  });

  it('a SIGKILLed owner whose postmaster kept running: removeLeftoverClusters stops it and removes the directory', async () => {
    const parent = parentDir();
    const { child, dir, pid } = await clusterInChild(parent, false);
    const backends = childrenOf(pid);
    // Not leftover while its owner lives.
    expect(await removeLeftoverClusters(parent)).toEqual([]);
    expect(existsSync(dir)).toBe(true);
    child.kill('SIGKILL');
    await child;
    expect(running(pid)).toBe(true); // a postmaster outlives the Node process that started it
    const logs: string[] = [];
    expect(await removeLeftoverClusters(parent, { log: (m) => logs.push(m) })).toEqual([dir]);
    expect(existsSync(dir)).toBe(false);
    expect(running(pid)).toBe(false);
    expect(backends.filter(running)).toEqual([]);
    expect(logs.join('\n')).toContain(dir);
    expect(await removeLeftoverClusters(parent)).toEqual([]);
  });

  it('a SIGKILLed owner: the postmaster shuts itself down (parent-death signal); the directory is removed later', async () => {
    const parent = parentDir();
    const { child, dir, pid } = await clusterInChild(parent, true);
    child.kill('SIGKILL');
    await child;
    await until(() => !running(pid), `postmaster ${pid} to be gone`, 60_000);
    expect(existsSync(dir)).toBe(true);
    expect(await removeLeftoverClusters(parent)).toEqual([dir]);
    expect(existsSync(dir)).toBe(false);
  });

  it('removeLeftoverClusters never touches a directory without our marker, with a live owner, or without the prefix', async () => {
    const parent = parentDir();
    const short = execa('node', ['-e', '']);
    await short;
    const dead = { pid: short.pid!, start: '1', host: os.hostname() };
    const markerOf = (owner: object) => JSON.stringify({ kind: 'hybrid-backup throwaway postgres', owner, createdAt: new Date().toISOString(), major });
    const make = (name: string, marker?: string) => {
      const d = path.join(parent, name);
      mkdirSync(d);
      writeFileSync(path.join(d, 'keep'), 'x');
      if (marker !== undefined) writeFileSync(path.join(d, 'owner.json'), marker);
      return d;
    };
    const noMarker = make('hb-drill-nomarkr');
    const alive = make('hb-drill-alive01', markerOf(selfIdentity()));
    const garbled = make('hb-drill-garble', '{"owner":');
    const otherHost = make('hb-drill-otherh', markerOf({ ...dead, host: 'not-this-host.example' }));
    const noPrefix = make('hbdrill-dead01', markerOf(dead));
    const target = make('elsewhere', markerOf(dead));
    symlinkSync(target, path.join(parent, 'hb-drill-link01'));
    const kept = [noMarker, alive, garbled, otherHost, noPrefix, target];
    if (asRoot) {
      // a marker someone else wrote does not count
      const foreign = make('hb-drill-foreign', markerOf(dead));
      execSync(`chown nobody ${JSON.stringify(path.join(foreign, 'owner.json'))}`);
      kept.push(foreign);
    }
    const deadDir = make('hb-drill-dead01', markerOf(dead));

    expect(await removeLeftoverClusters(parent)).toEqual([deadDir]);
    for (const d of kept) expect(existsSync(path.join(d, 'keep')), d).toBe(true);
    expect(lstatSync(path.join(parent, 'hb-drill-link01')).isSymbolicLink()).toBe(true);
    expect(existsSync(deadDir)).toBe(false);
    expect(await removeLeftoverClusters(path.join(parent, 'does-not-exist'))).toEqual([]);
  });

  it('a cluster started in parallel with another is independent of it', async () => {
    const parent = parentDir();
    const [a, b] = await Promise.all([startThrowawayCluster({ major, parentDir: parent }), startThrowawayCluster({ major, parentDir: parent })]);
    clusters.push(a, b);
    expect(a.dir).not.toBe(b.dir);
    const ids = await Promise.all(
      [a, b].map(async (c) => {
        const cl = new pg.Client({ host: c.socketDir, port: c.conn.port, user: 'postgres', database: 'postgres' });
        await cl.connect();
        try {
          return (await cl.query<{ id: string }>('select system_identifier::text as id from pg_control_system()')).rows[0]!.id;
        } finally {
          await cl.end();
        }
      }),
    );
    expect(ids[0]).not.toBe(ids[1]);
    await a.stop();
    expect(running(b.pid)).toBe(true);
    await b.stop();
    expect(readdirSync(parent)).toEqual([]);
  });
});
