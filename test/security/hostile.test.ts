/**
 * Nothing for a hostile neighbour. Each test performs an attack a local user could try against the
 * service (a real daemon, the real CLI, real sockets and files) and checks it gets nothing:
 * credentials sent only where they belong; a socket another user put in place is never talked to;
 * the socket cannot be starved or made to hold replies; links are never followed where files are
 * written; text from users cannot drive the terminal; a stopped service cannot hang a script.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { type Daemon, startDaemon, stopDaemon } from '../helpers/daemon.js';
import { PasswordTrap } from '../helpers/fake-pg.js';
import { createDatabase, dropDatabase, psql } from '../helpers/pg.js';
import { until } from '../helpers/wait.js';

let db: { name: string; url: string };
const dirs: string[] = [];
const daemons: Daemon[] = [];
const SECRET = 'service-only-s3cr3t-Pa55';

beforeAll(async () => {
  db = await createDatabase('hostile');
  await psql(db.url, 'create table t (id int primary key, note text); insert into t select g, md5(g::text) from generate_series(1, 200) g;');
});
afterEach(async () => {
  for (const d of daemons.splice(0)) await stopDaemon(d, 'SIGKILL');
});
afterAll(async () => {
  await dropDatabase(db.name);
  dirs.forEach(removeDir);
});

function setup(config: Record<string, unknown> = {}) {
  const dir = tempDir('hbh');
  dirs.push(dir);
  const cfg = path.join(dir, 'c.json');
  writeFileSync(cfg, JSON.stringify({ schedules: { backup: '0 0 1 1 *', prune: '0 1 1 1 *', monitor: '0 2 1 1 *' }, timezone: 'UTC', supabase: { enabled: false }, ...config }));
  const backupDir = path.join(dir, 'b');
  return { dir, backupDir, env: { DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: cfg, HYBRID_BACKUP_SOCKET: path.join(dir, 's.sock') } };
}

async function daemon(env: Record<string, string>): Promise<Daemon> {
  const d = await startDaemon(env);
  daemons.push(d);
  return d;
}

describe('credentials go only where they belong', () => {
  it("a restore target that asks for a cleartext password never gets the service's PGPASSWORD", async () => {
    const s = setup();
    const u = new URL(db.url);
    // the service is configured through libpq's variables, password included
    const { DATABASE_URL: _unset, ...base } = s.env;
    const env = { ...base, PGHOST: u.hostname, PGPORT: u.port || '5432', PGUSER: 'postgres', PGDATABASE: db.name, PGPASSWORD: SECRET };
    await daemon(env);
    const clientEnv = { BACKUP_DIR: s.backupDir, HYBRID_BACKUP_CONFIG: s.env.HYBRID_BACKUP_CONFIG, HYBRID_BACKUP_SOCKET: s.env.HYBRID_BACKUP_SOCKET };
    // the backup names its database (no password: the service holds that), as a backup must
    expect((await runCli(['manual'], { ...clientEnv, PGHOST: u.hostname, PGPORT: u.port || '5432', PGDATABASE: db.name })).exitCode).toBe(0);
    const trap = await new PasswordTrap().start();
    try {
      for (const create of [[], ['--create']]) {
        const r = await runCli(['restore', 'latest', '--target', `postgresql://postgres@127.0.0.1:${trap.port}/x`, ...create], clientEnv);
        expect(r.exitCode).toBe(1);
        expect(r.stderr).toMatch(/authentication failed|password/);
      }
      expect(trap.connections).toBeGreaterThan(0);
      expect(trap.passwords.every((p) => p === '')).toBe(true);
      expect(trap.passwords.join()).not.toContain(SECRET);
    } finally {
      await trap.stop();
    }
  });
});

describe('the client talks only to a socket it can trust', () => {
  it('a socket another user bound first in a directory others can write to is refused before anything is sent', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test runs a second user (nobody) and needs root (CI runs as root)');
    const s = setup();
    const shared = path.join(s.dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o777);
    chmodSync(s.dir, 0o755);
    const socket = path.join(shared, 'hb.sock');
    const log = path.join(shared, 'heard.log');
    const impostor = path.join(shared, 'impostor.mjs');
    writeFileSync(
      impostor,
      `import net from 'node:net'; import fs from 'node:fs';
       net.createServer((c) => c.on('data', (d) => { fs.appendFileSync(${JSON.stringify(log)}, d); c.end('{"type":"result","ok":true,"exitCode":0,"doc":{"id":999,"kind":"pre-change","status":"ok"}}\\n'); }))
         .listen(${JSON.stringify(socket)}, () => { fs.chmodSync(${JSON.stringify(socket)}, 0o777); console.log('ready'); });`,
    );
    chmodSync(impostor, 0o644);
    const uid = Number((await execa('id', ['-u', 'nobody'])).stdout);
    const gid = Number((await execa('id', ['-g', 'nobody'])).stdout);
    const nobody = execa(process.execPath, [impostor], { uid, gid, reject: false, all: true, cwd: shared });
    try {
      await until(() => existsSync(socket), 'the impostor to bind the socket');
      const env = { ...s.env, HYBRID_BACKUP_SOCKET: socket };
      const pre = await runCli(['pre-change', 'release 42'], env);
      expect(pre.exitCode, pre.stdout + pre.stderr).toBe(2);
      expect(pre.stdout).not.toMatch(/backup 999/);
      expect(pre.stderr).toMatch(/refusing to use the control socket .*hb\.sock: its directory .* is writable by other users \(mode 777\)/);
      const restore = await runCli(['restore', 'latest', '--target', `postgresql://app:${SECRET}@127.0.0.1:5432/x`], env);
      expect(restore.exitCode).toBe(2);
      expect(existsSync(log)).toBe(false); // it heard nothing
      // the same socket, in a directory only its owner can write: trusted (nobody's own socket is not ours either)
      const direct = await runCli(['list', '--direct'], env);
      expect(direct.exitCode).toBe(0);
    } finally {
      nobody.kill('SIGKILL');
      await nobody;
    }
  });
});

describe('the service knows who asks', () => {
  it('with socket.group letting another user in, each request is logged with the peer the kernel names', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test runs a second user (nobody) and needs root (CI runs as root)');
    const s = setup({ socket: { group: 'nogroup' } });
    chmodSync(s.dir, 0o755);
    const d = await daemon(s.env);
    expect(statSync(d.socket).mode & 0o777).toBe(0o660);
    const uid = Number((await execa('id', ['-u', 'nobody'])).stdout);
    const gid = Number((await execa('id', ['-g', 'nobody'])).stdout);
    const r = await execa(process.execPath, [CLI, 'list', '--json'], { uid, gid, cwd: '/tmp', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HYBRID_BACKUP_SOCKET: d.socket, BACKUP_DIR: '/nonexistent/not-used' }, reject: false, extendEnv: false });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    await until(() => new RegExp(`control request list from nobody \\(uid ${uid}, pid \\d+\\)`).test(d.output()), 'the request logged with its peer');
    expect((await runCli(['list'], s.env)).exitCode).toBe(0);
    await until(() => /control request list from root \(uid 0, pid \d+\)/.test(d.output()), "root's request logged too");
  });
});

describe('the socket cannot be starved or bloated', () => {
  it('70 clients trickling one byte at a time do not keep a real client out', async () => {
    const s = setup({ socket: { maxConnections: 16, requestTimeoutSeconds: 30 } });
    const d = await daemon(s.env);
    const trickle: net.Socket[] = [];
    try {
      for (let i = 0; i < 70; i++) {
        const c = net.connect({ path: d.socket });
        c.on('error', () => {});
        c.on('connect', () => c.write('{'));
        trickle.push(c);
      }
      await until(() => trickle.every((c) => !c.connecting), 'the trickling clients to connect');
      const r = await runCli(['list', '--json'], s.env);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ total: 0 });
    } finally {
      for (const c of trickle) c.destroy();
    }
  });

  it('a client that sends requests without reading the replies is cut off; others are answered', async () => {
    const s = setup();
    const d = await daemon(s.env);
    for (let i = 0; i < 3; i++) expect((await runCli(['manual', `b${i}`], s.env)).exitCode).toBe(0);
    const hog = net.connect({ path: d.socket });
    hog.on('error', () => {});
    let closed = false;
    let heard = '';
    hog.on('close', () => (closed = true));
    hog.on('data', (x) => (heard += x.toString()));
    hog.pause(); // does not read
    await new Promise<void>((r) => hog.once('connect', () => r()));
    hog.write('{"command":"list","args":{"all":true}}\n'.repeat(200));
    await until(() => /dropping a control client that sent more than 8 requests/.test(d.output()), 'the service to drop the flooding client');
    hog.resume(); // what it finds: the refusal, then the end
    await until(() => closed, 'the connection to be closed');
    expect(heard).toMatch(/more than 8 requests sent without waiting for the replies/);
    const r = await runCli(['list', '--json'], s.env);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout).total).toBe(3);
  });
});

describe('links are never followed where files are written', () => {
  it('reports/ or backup.log as a link, and report --out through a link to BACKUP_DIR, are refused; the victims are untouched', async () => {
    const s = setup();
    expect((await runCli(['manual'], s.env)).exitCode).toBe(0);
    const victim = path.join(s.dir, 'victim');
    mkdirSync(victim, { mode: 0o755 });
    writeFileSync(path.join(victim, 'keep.txt'), 'precious\n');
    symlinkSync(victim, path.join(s.backupDir, 'reports'));
    const r = await runCli(['report'], s.env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(/reports is a symbolic link; refusing to write through it/);
    expect(statSync(victim).mode & 0o777).toBe(0o755);
    expect(readdirSync(victim)).toEqual(['keep.txt']);

    // report --out via a link that leads into BACKUP_DIR: judged where it really goes
    const alias = path.join(s.dir, 'alias');
    symlinkSync(s.backupDir, alias);
    const out = await runCli(['report', '--out', path.join(alias, 'x.sql')], s.env);
    expect(out.exitCode).toBe(2);
    expect(out.stderr).toMatch(/is inside the backup directory/);
    expect(existsSync(path.join(s.backupDir, 'x.sql'))).toBe(false);

    // backup.log as a link to another file: never appended to
    const victimFile = path.join(victim, 'keep.txt');
    const logFile = path.join(s.backupDir, 'backup.log');
    rmSync(logFile);
    symlinkSync(victimFile, logFile);
    await runCli(['manual', 'after the link'], s.env);
    expect(readFileSync(victimFile, 'utf8')).toBe('precious\n');
    // and the ledger never opens through a link
    const ledger = path.join(s.backupDir, 'ledger.db');
    renameSync(ledger, path.join(s.dir, 'ledger.moved'));
    symlinkSync(path.join(s.dir, 'ledger.moved'), ledger);
    const l = await runCli(['list'], s.env);
    expect(l.exitCode).toBe(1);
    expect(l.stderr).toMatch(/ledger\.db is a symbolic link; refusing to open the ledger through it/);
  });
});

describe('text from users cannot drive the terminal', () => {
  it('newlines, table characters and escape sequences in a description are shown escaped; JSON keeps them exactly', async () => {
    const s = setup();
    const nasty = 'line one\nline two | # heading\r\x1b[31mred\x1b]0;owned title\x07 \u202eevil';
    const m = await runCli(['manual', nasty, '--json'], s.env);
    expect(m.exitCode).toBe(0);
    expect(JSON.parse(m.stdout).description).toBe(nasty);
    const list = await runCli(['list'], s.env);
    expect(list.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f\u202e]/);
    expect(list.stdout).toContain('line one\\nline two | # heading\\r\\x1b[31mred\\x1b]0;owned title\\x07 \\u202eevil');
    expect(list.stdout.split('\n').filter((l) => /^\d+ +\d{4}-\d\d-\d\d /.test(l))).toHaveLength(1); // one backup, one line
    const human = await runCli(['manual', nasty], s.env);
    expect(human.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f\u202e]/);
    const md = await runCli(['report'], s.env);
    expect(md.stdout).not.toMatch(/[\r\x1b\x07\u202e]/);
    const saved = readFileSync(JSON.parse((await runCli(['report', '--format', 'html', '--json'], s.env)).stdout).file, 'utf8');
    expect(saved).not.toMatch(/[\r\x1b\x07\u202e]/);
    // no script, and a policy that would stop one (and any outside fetch) if text ever smuggled one in
    expect(saved).not.toMatch(/<script/i);
    expect(saved).toContain(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">`);
  });
});

describe('a stuck service cannot hang a migration script', () => {
  it('with the service stopped by SIGSTOP, pre-change gives up after socket.replyTimeoutSeconds, exit 1, saying why', async () => {
    const s = setup({ socket: { replyTimeoutSeconds: 5 } });
    const d = await daemon(s.env);
    process.kill(d.proc.pid!, 'SIGSTOP');
    try {
      const t0 = Date.now();
      const r = await runCli(['pre-change', 'release 43'], s.env);
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/has sent nothing for 5 s \(no reply, no progress\): it is not answering/);
      expect(Date.now() - t0).toBeLessThan(30_000);
    } finally {
      process.kill(d.proc.pid!, 'SIGCONT');
    }
  });
});
