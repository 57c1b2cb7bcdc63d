/**
 * Throwaway PostgreSQL clusters for restore drills: a fresh `initdb` in a private temporary
 * directory (`<parent>/hb-drill-XXXXXX`), a postmaster that listens only on a Unix socket inside
 * that directory (no TCP port at all), tuned for speed instead of durability (fsync, full-page
 * writes and synchronous commit off, `wal_level=minimal`), trust authentication for the
 * bootstrap superuser (`postgres`, or the `superuser` option), and removed — processes and
 * files — by {@link ThrowawayCluster.stop}.
 *
 * Running as root: initdb and postgres refuse to, so they run as the OS user `postgres` (else
 * `nobody` — whose files any other service running as `nobody` could read: prefer a `postgres`
 * user); the directory is handed to that user, and root still connects over the socket. The
 * parent directory must be reachable by that user (checked before anything is created).
 *
 * A Node process killed with SIGKILL cannot clean up. Two guards:
 * - every directory holds a marker (`owner.json`: the owning process's pid, start time and
 *   host), and {@link removeLeftoverClusters} stops the processes of, and removes, every
 *   `hb-drill-*` directory whose owner is dead — and never touches any other;
 * - on Linux the postmaster is started through `setpriv --pdeathsig QUIT`, so it shuts itself
 *   down (immediate shutdown) when the thread that started it dies; the directory is left for
 *   {@link removeLeftoverClusters}.
 *
 * No state outside the returned handles: every call finds its binaries and user afresh.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { constants, accessSync, closeSync, type Dirent, openSync, readFileSync, readlinkSync, readdirSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { HbError } from '../domain/errors.js';
import { loadPg } from '../util/lazy.js';
import { isAlive, type ProcessIdentity, selfIdentity } from '../util/process.js';
import { redact } from '../util/redact.js';
import type { ConnInfo } from './connection.js';
import { parseToolVersion } from './tools.js';

const execFileP = promisify(execFile);

/** The name every throwaway cluster directory starts with (followed by mkdtemp's 6 characters). */
export const THROWAWAY_DIR_PREFIX = 'hb-drill-';
/** The marker naming the owning process; a directory without it is never removed. */
export const THROWAWAY_MARKER = 'owner.json';
const MARKER_KIND = 'hybrid-backup throwaway postgres';
const PORT = 5432;
const SOCKET_NAME = `.s.PGSQL.${PORT}`;
/** sizeof(sockaddr_un.sun_path) is 108 on Linux, including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;
const DEFAULT_START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
const POLL_MS = 5;
/** Settings that keep the server private; `settings` may not change them. */
const PROTECTED_SETTINGS = new Set(['listen_addresses', 'port', 'unix_socket_directories', 'unix_socket_permissions', 'unix_socket_group', 'data_directory', 'config_file', 'hba_file', 'ident_file']);
/** Command names of the processes a cluster directory can have (postmaster and backends, initdb). */
const CLUSTER_COMMS = new Set(['postgres', 'postmaster', 'initdb']);

/**
 * Settings for a scratch server: nothing here needs to survive a crash. `wal_level=minimal`
 * lets a `--single-transaction` restore skip WAL for the tables it creates.
 */
const SPEED_SETTINGS: Readonly<Record<string, string>> = {
  fsync: 'off',
  full_page_writes: 'off',
  synchronous_commit: 'off',
  wal_level: 'minimal',
  max_wal_senders: '0',
  shared_buffers: '32MB',
  max_connections: '20',
  autovacuum: 'off',
};

export interface ThrowawayCluster {
  /**
   * The bootstrap superuser (`postgres`, or `superuser` when given) over the Unix socket, database
   * `postgres`, no password (trust), sslmode=disable.
   */
  conn: ConnInfo;
  /** The cluster's own directory: marker, server log, `data/`, and the socket. Gone after stop(). */
  dir: string;
  major: number;
  /** e.g. "15.20 (Debian 15.20-0+deb12u1)" */
  version: string;
  /** The directory holding the socket (the cluster directory itself). */
  socketDir: string;
  /** The postmaster's pid. */
  pid: number;
  /**
   * Stops the server (immediate shutdown: nothing in it is worth a checkpoint) and removes the
   * directory. Idempotent; concurrent calls share one stop.
   * @throws HbError `restore-test-failed` when the directory cannot be removed (a later call retries).
   */
  stop(): Promise<void>;
}

export interface ThrowawayOptions {
  /** The PostgreSQL major version to run: exactly this one, never another. */
  major: number;
  /** Where initdb and postgres are; default /usr/lib/postgresql/<major>/bin, /usr/pgsql-<major>/bin, PATH. */
  pgBinDir?: string;
  /** PATH's directories (from the configuration's environment); default none beyond /usr/bin and /bin. */
  path?: readonly string[];
  /** Where the cluster directory is created; default os.tmpdir(). Must be short (socket path limit). */
  parentDir?: string;
  /**
   * Aborting it while starting stops and removes what was started (HbError `aborted`); after the
   * start it stops the cluster, as stop() would.
   */
  signal?: AbortSignal;
  log?: (msg: string) => void;
  /** More server settings (`-c name=value`), over the defaults; the ones keeping it private are refused. */
  settings?: Record<string, string>;
  /** Deadline for initdb and start together; default 60 s. */
  startTimeoutMs?: number;
  /**
   * Whether the postmaster shuts down when the thread that started it dies (`setpriv
   * --pdeathsig`, when installed); default true. Start clusters from the main thread: a worker
   * thread's exit stops them too.
   */
  dieWithParent?: boolean;
  /**
   * The bootstrap superuser's name (`initdb -U`); default `postgres`. A Supabase-shaped cluster
   * needs `supabase_admin` here, as the platform's image has it.
   */
  superuser?: string;
}

/** What `owner.json` holds. */
interface Marker {
  kind: typeof MARKER_KIND;
  owner: ProcessIdentity;
  createdAt: string;
  major: number;
}

interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

interface ServerBinaries {
  binDir: string;
  initdb: string;
  postgres: string;
  version: string;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}


/**
 * Finds initdb and postgres of exactly `major`, side by side: in `pgBinDir` only when given, else
 * in /usr/lib/postgresql/<major>/bin, /usr/pgsql-<major>/bin, then on PATH.
 * @throws HbError `pg-tool-not-found` naming the server package to install.
 */
export async function findServerBinaries(major: number, pgBinDir?: string, searchPath: readonly string[] = []): Promise<ServerBinaries> {
  const dirs = pgBinDir ? [pgBinDir] : [`/usr/lib/postgresql/${major}/bin`, `/usr/pgsql-${major}/bin`, ...searchPath];
  const seen = new Set<string>();
  const others: string[] = [];
  for (const dir of dirs) {
    const initdb = path.join(dir, 'initdb');
    if (seen.has(initdb) || !isExecutable(initdb)) continue;
    seen.add(initdb);
    let v: ReturnType<typeof parseToolVersion> = null;
    try {
      v = parseToolVersion((await execFileP(initdb, ['--version'], { timeout: 10_000 })).stdout);
    } catch {
      v = null;
    }
    if (!v) continue;
    if (v.major !== major) {
      others.push(`${v.major} in ${dir}`);
      continue;
    }
    const postgres = path.join(dir, 'postgres');
    if (!isExecutable(postgres)) {
      others.push(`${v.major} without postgres in ${dir}`);
      continue;
    }
    return { binDir: dir, initdb, postgres, version: v.version };
  }
  const where = pgBinDir ? `in ${pgBinDir}` : `in /usr/lib/postgresql/${major}/bin, /usr/pgsql-${major}/bin or on PATH`;
  const found = others.length > 0 ? ` (found PostgreSQL ${others.join(', ')})` : '';
  throw new HbError(
    'pg-tool-not-found',
    `no initdb and postgres of PostgreSQL ${major} found ${where}${found}`,
    `a restore drill runs its own PostgreSQL ${major} server: install the server package — apt install postgresql-${major} on Debian/Ubuntu (the client package postgresql-client-${major} has no initdb), dnf install postgresql${major}-server from the PGDG repository on RHEL — ${pgBinDir ? `or point pgBinDir at a PostgreSQL ${major} bin directory` : 'or set pgBinDir to its bin directory'}`,
  );
}

/** `setpriv` when it supports `--pdeathsig` (util-linux 2.33 and later), else null. */
async function findSetpriv(searchPath: readonly string[]): Promise<string | null> {
  for (const dir of ['/usr/bin', '/bin', ...searchPath]) {
    const p = path.join(dir, 'setpriv');
    if (!isExecutable(p)) continue;
    try {
      const r = await execFileP(p, ['--help'], { timeout: 5_000 });
      return /--pdeathsig/.test(r.stdout) ? p : null;
    } catch {
      return null;
    }
  }
  return null;
}

function parsePasswd(text: string, name: string): OsUser | null {
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 4) {
      const uid = Number(f[2]);
      const gid = Number(f[3]);
      if (Number.isInteger(uid) && Number.isInteger(gid)) return { name, uid, gid };
    }
  }
  return null;
}

async function lookupUser(name: string): Promise<OsUser | null> {
  try {
    const u = parsePasswd(await fs.readFile('/etc/passwd', 'utf8'), name);
    if (u) return u;
  } catch {
    // no /etc/passwd: ask NSS
  }
  try {
    return parsePasswd((await execFileP('getent', ['passwd', name], { timeout: 5_000 })).stdout, name);
  } catch {
    return null;
  }
}

/**
 * The OS user initdb and postgres run as: null (ourselves) unless we are root; then `postgres`,
 * else `nobody`.
 */
async function serverUser(): Promise<OsUser | null> {
  if (process.getuid?.() !== 0) return null;
  const u = (await lookupUser('postgres')) ?? (await lookupUser('nobody'));
  if (!u || u.uid === 0) {
    throw new HbError('restore-test-failed', 'running as root and there is no user postgres or nobody to run a throwaway PostgreSQL as (initdb and postgres refuse to run as root)', 'create a system user postgres (useradd --system postgres), or run hybrid-backup as an unprivileged user');
  }
  return u;
}

/** Refuses, before creating anything, a parent directory `user` cannot reach. */
async function assertReachable(parent: string, user: OsUser): Promise<void> {
  let p: string;
  try {
    p = await fs.realpath(parent);
  } catch (e) {
    throw new HbError('restore-test-failed', `cannot use ${parent} for a throwaway PostgreSQL: ${redact((e as Error).message)}`, 'the parent directory must exist and be writable');
  }
  for (;;) {
    const st = await fs.stat(p);
    const x = st.uid === user.uid ? st.mode & 0o100 : st.gid === user.gid ? st.mode & 0o010 : st.mode & 0o001;
    if (!x) {
      throw new HbError(
        'restore-test-failed',
        `user ${user.name} cannot reach ${parent}: ${p} is mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, owned by uid ${st.uid}`,
        `as root, the throwaway PostgreSQL runs as user ${user.name}: use a parent directory it can reach, such as /tmp`,
      );
    }
    const up = path.dirname(p);
    if (up === p) return;
    p = up;
  }
}

function validateSettings(settings: Record<string, string>): void {
  for (const [name, value] of Object.entries(settings)) {
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(name)) throw new HbError('config-invalid', `"${name}" is not a PostgreSQL setting name`, 'setting names are letters, digits, _ and .');
    if (PROTECTED_SETTINGS.has(name.toLowerCase())) {
      throw new HbError('config-invalid', `the throwaway PostgreSQL setting ${name} cannot be changed: it keeps the server private (a Unix socket in its own directory, no TCP)`, `remove ${name} from the settings`);
    }
    if (value.includes('\0')) throw new HbError('config-invalid', `the value of setting ${name} contains a NUL byte`);
  }
}

/** Double-quotes a directory for unix_socket_directories (a comma-separated list). */
function quoteListItem(dir: string): string {
  return `"${dir.replace(/"/g, '""')}"`;
}

/** The marker is written to a temporary name and renamed: a reader sees all of it or none. */
async function writeMarker(dir: string, marker: Marker): Promise<void> {
  const tmp = path.join(dir, `.${THROWAWAY_MARKER}.tmp`);
  await fs.writeFile(tmp, JSON.stringify(marker), { mode: 0o600 });
  await fs.rename(tmp, path.join(dir, THROWAWAY_MARKER));
}

/** The marker of a directory: only a regular file owned by us, with an owner, counts. */
async function readMarker(dir: string): Promise<Marker | null> {
  const file = path.join(dir, THROWAWAY_MARKER);
  try {
    const st = await fs.lstat(file);
    if (!st.isFile() || st.uid !== process.geteuid?.()) return null;
    const m = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<Marker> | null;
    const o = m?.owner;
    if (m?.kind !== MARKER_KIND || !o || !Number.isInteger(o.pid) || o.pid <= 0 || typeof o.host !== 'string' || !(o.start === null || typeof o.start === 'string')) return null;
    return m as Marker;
  } catch {
    return null;
  }
}

/** The last lines of a log, redacted, on one line. */
async function logTail(file: string, lines = 8): Promise<string> {
  let text: string;
  try {
    const fh = await fs.open(file, 'r');
    try {
      const size = (await fh.stat()).size;
      const len = Math.min(size, 4096);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, size - len);
      text = buf.toString('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
  return redact(
    text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')
      .slice(-lines)
      .join(' | '),
  );
}

interface Tracked {
  child: ChildProcess;
  /** Settles when the process exited, or could not be spawned (`error`). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>;
  done: boolean;
}

function track(child: ChildProcess): Tracked {
  const t = { child, done: false } as Tracked;
  t.exited = new Promise((resolve) => {
    child.on('error', (error) => {
      // Also emitted for a failed kill(); only a spawn failure (no pid) ends the process.
      if (child.pid === undefined) {
        t.done = true;
        resolve({ code: null, signal: null, error });
      }
    });
    child.once('exit', (code, signal) => {
      t.done = true;
      resolve({ code, signal });
    });
  });
  return t;
}

function signalPid(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Resolves with true when `p` settled first, false when `signal` aborted first. */
async function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  let onAbort!: () => void;
  const aborted = new Promise<false>((resolve) => {
    onAbort = () => resolve(false);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([p.then(() => true as const), aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/**
 * Ends a child we started (the leader of its own process group): `sig` to it, or to its whole
 * group with `toGroup`; SIGKILL to the group after the grace period. Resolves once it exited.
 * Signals go out only while the child is unreaped, so its pid (and group id) cannot have been
 * reused.
 */
async function endChild(t: Tracked, sig: NodeJS.Signals, toGroup: boolean): Promise<void> {
  const pid = t.child.pid;
  if (t.done || pid === undefined) return;
  t.child.ref(); // the wait below must keep the process alive
  signalPid(toGroup ? -pid : pid, sig);
  if (await raceAbort(t.exited, AbortSignal.timeout(STOP_GRACE_MS))) return;
  if (!t.done) signalPid(-pid, 'SIGKILL');
  await raceAbort(t.exited, AbortSignal.timeout(STOP_GRACE_MS));
}

/**
 * Spawns a server program as `user`, optionally wrapped in `setpriv --pdeathsig` (which execs it:
 * the pid is the program's). libuv switches the uid and gid (and drops supplementary groups)
 * before exec, so the parent-death signal is set after the credential change and sticks.
 */
function spawnServerProgram(program: string, args: string[], o: { user: OsUser | null; setpriv: string | null; deathSignal: NodeJS.Signals; cwd: string; logFd: number; path: readonly string[] }): Tracked {
  const [file, argv] = o.setpriv ? [o.setpriv, ['--pdeathsig', o.deathSignal.replace(/^SIG/, ''), '--', program, ...args]] : [program, args];
  const child = spawn(file, argv, {
    cwd: o.cwd,
    // Nothing inherited: no secrets in the server's environment, no PGPORT/PGDATA steering it.
    env: { PATH: ['/usr/bin', '/bin', ...o.path].join(':'), LC_ALL: 'C', TZ: 'UTC' },
    stdio: ['ignore', o.logFd, o.logFd],
    // Its own session and process group: a Ctrl-C at the terminal is ours to handle, and the
    // group can be ended as one.
    detached: true,
    ...(o.user ? { uid: o.user.uid, gid: o.user.gid } : {}),
  });
  return track(child);
}

/** Whether a server answers on the socket in `dir` (for majors without a status in postmaster.pid). */
async function acceptsConnections(dir: string, superuser: string): Promise<boolean> {
  const { Client } = await loadPg();
  const c = new Client({ host: dir, port: PORT, user: superuser, database: 'postgres', connectionTimeoutMillis: 1_000 });
  c.on('error', () => {});
  try {
    await c.connect();
    await c.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => {});
  }
}

/** Line 8 of postmaster.pid: `ready` once the server accepts connections (PostgreSQL 10 and later). */
async function pmStatus(dataDir: string): Promise<{ pid: number; status: string } | null> {
  try {
    const lines = (await fs.readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n');
    return { pid: Number(lines[0]), status: (lines[7] ?? '').trim() };
  } catch {
    return null;
  }
}

/**
 * Starts a throwaway PostgreSQL of exactly `opts.major`, initialised afresh, and resolves once it
 * accepts connections. The caller must call stop() (in a `finally`).
 *
 * @throws HbError `pg-tool-not-found` (no initdb/postgres of that major: the hint names the server
 *   package), `config-invalid` (a refused setting), `aborted` (`signal`), `restore-test-failed`
 *   (initdb or the server failed, or the deadline passed: the message ends with the server log's
 *   last lines). Whatever was started is stopped and removed before it throws.
 */
export async function startThrowawayCluster(opts: ThrowawayOptions): Promise<ThrowawayCluster> {
  const log = opts.log ?? (() => {});
  const started = performance.now();
  const major = opts.major;
  const superuser = opts.superuser ?? 'postgres';
  const abortedError = () => new HbError('aborted', `the throwaway PostgreSQL ${major} was stopped while starting`);
  if (opts.signal?.aborted) throw abortedError();
  const settings = { ...SPEED_SETTINGS, ...(opts.settings ?? {}) };
  validateSettings(opts.settings ?? {});
  if (superuser === '' || superuser.length > 63 || superuser.includes('\0')) {
    throw new HbError('config-invalid', `"${superuser}" cannot be the superuser's name of a throwaway PostgreSQL`, 'give a role name of 1 to 63 bytes');
  }
  const parent = path.resolve(opts.parentDir ?? os.tmpdir());
  const socketBytes = Buffer.byteLength(path.join(parent, `${THROWAWAY_DIR_PREFIX}XXXXXX`, SOCKET_NAME));
  if (socketBytes > MAX_SOCKET_PATH_BYTES) {
    throw new HbError(
      'restore-test-failed',
      `the socket path of a throwaway PostgreSQL under ${parent} would be ${socketBytes} bytes, over the ${MAX_SOCKET_PATH_BYTES}-byte limit of Unix socket paths`,
      'use a shorter parent directory, such as /tmp',
    );
  }
  const [bins, setpriv, user] = await Promise.all([findServerBinaries(major, opts.pgBinDir, opts.path), opts.dieWithParent === false ? null : findSetpriv(opts.path ?? []), serverUser()]);
  if (user) await assertReachable(parent, user);
  if (opts.signal?.aborted) throw abortedError();

  const timeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const deadline = AbortSignal.timeout(timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline;
  let dir: string;
  try {
    dir = await fs.mkdtemp(path.join(parent, THROWAWAY_DIR_PREFIX));
  } catch (e) {
    throw new HbError('restore-test-failed', `cannot create a directory for a throwaway PostgreSQL in ${parent}: ${redact((e as Error).message)}`, 'the parent directory must exist and be writable');
  }
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  const marker: Marker = { kind: MARKER_KIND, owner: selfIdentity(), createdAt: new Date().toISOString(), major };
  /**
   * The running child and how to end it: initdb with its whole process group at once (its
   * bootstrap server would outlive it for a moment); the server by immediate shutdown.
   */
  let current: { t: Tracked; sig: NodeJS.Signals; toGroup: boolean } | undefined;
  let logFd: number | undefined;
  const as = user ? ` as user ${user.name}` : '';
  try {
    await writeMarker(dir, marker);
    if (user) await fs.chown(dir, user.uid, user.gid);
    await fs.chmod(dir, 0o700);
    logFd = openSync(logFile, 'a', 0o600);
    const spawnOpts = { user, setpriv, cwd: dir, logFd, path: opts.path ?? [] };

    // initdb: no fsync, no locale work (C), UTF8, trust for the bootstrap superuser.
    log(`initdb of PostgreSQL ${bins.version} into ${dataDir}${as}`);
    const t0 = performance.now();
    const initdb = spawnServerProgram(bins.initdb, ['-D', dataDir, '-U', superuser, '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync'], { ...spawnOpts, deathSignal: 'SIGKILL' });
    current = { t: initdb, sig: 'SIGKILL', toGroup: true };
    if (!(await raceAbort(initdb.exited, signal))) throw signal.reason;
    const init = await initdb.exited;
    if (init.error || init.code !== 0) throw new Error(init.error ? `cannot run initdb: ${init.error.message}` : `initdb failed (${init.signal ?? `exit code ${init.code}`})`);
    const initMs = performance.now() - t0;

    // The server: only the socket, in the cluster directory.
    const args = ['-D', dataDir, '-p', String(PORT), '-c', 'listen_addresses=', '-c', `unix_socket_directories=${quoteListItem(dir)}`, '-c', 'unix_socket_permissions=0700'];
    for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`);
    const t1 = performance.now();
    const server = spawnServerProgram(bins.postgres, args, { ...spawnOpts, deathSignal: 'SIGQUIT' });
    current = { t: server, sig: 'SIGQUIT', toGroup: false };
    closeSync(logFd);
    logFd = undefined;
    for (;;) {
      if (server.done) {
        const r = await server.exited;
        throw new Error(r.error ? `cannot run postgres: ${r.error.message}` : `the server exited while starting (${r.signal ?? `exit code ${r.code}`})`);
      }
      const st = await pmStatus(dataDir);
      if (st?.status === 'ready' && st.pid === server.child.pid) break;
      if (major < 10 && st?.pid === server.child.pid && (await acceptsConnections(dir, superuser))) break; // no status line before 10
      if (signal.aborted) throw signal.reason;
      await sleep(POLL_MS);
    }
    const pid = server.child.pid!;
    server.child.unref(); // a forgotten stop() must not keep the process alive (pdeathsig ends the server)
    log(`throwaway PostgreSQL ${bins.version} ready on ${dir}${as} in ${Math.round(performance.now() - started)} ms (initdb ${Math.round(initMs)} ms, start ${Math.round(performance.now() - t1)} ms)`);

    let stopping: Promise<void> | undefined;
    const onAbort = () => {
      log(`stopping throwaway PostgreSQL on ${dir}: aborted`);
      stop().catch(() => {});
    };
    const stop = (): Promise<void> =>
      (stopping ??= (async () => {
        opts.signal?.removeEventListener('abort', onAbort);
        await endChild(server, 'SIGQUIT', false);
        try {
          await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 });
        } catch (e) {
          stopping = undefined; // a later call tries again
          throw new HbError('restore-test-failed', `could not remove the throwaway PostgreSQL directory ${dir}: ${redact((e as Error).message)}`, `remove it by hand (rm -rf ${dir})`);
        }
        log(`throwaway PostgreSQL on ${dir} stopped and removed`);
      })());
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.signal?.aborted) {
      await stop();
      throw abortedError();
    }
    // sslmode=disable: the server has no TLS, and a PGSSLMODE=require in our environment (meant
    // for the production server) must not make clients ask for it over the socket.
    const conn: ConnInfo = { host: dir, port: PORT, user: superuser, database: 'postgres', password: undefined, params: { sslmode: 'disable' }, explicit: true, env: {} };
    return { conn, dir, major, version: bins.version, socketDir: dir, pid, stop };
  } catch (e) {
    if (logFd !== undefined) closeSync(logFd);
    const tail = await logTail(logFile);
    if (current) await endChild(current.t, current.sig, current.toGroup);
    await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 }).catch(() => {});
    if (opts.signal?.aborted) throw abortedError();
    if (e instanceof HbError) throw e;
    const what = deadline.aborted ? `did not accept connections within ${Math.round(timeoutMs / 1000)} s` : `failed to start: ${redact((e as Error).message)}`;
    throw new HbError(
      'restore-test-failed',
      `the throwaway PostgreSQL ${major} ${what}${tail ? `; server log: ${tail}` : ''}`,
      user ? `initdb and postgres ran as user ${user.name} in ${parent}: check the log lines above, free space and permissions there` : `check the log lines above, and free space and permissions in ${parent}`,
      { cause: e },
    );
  }
}

/** The state letter of /proc/<pid>/stat (R, S, D, Z, …), "gone" without one, null off Linux. */
function procState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.charAt(stat.lastIndexOf(')') + 2);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' && hasProc() ? 'gone' : null;
  }
}

function hasProc(): boolean {
  try {
    accessSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a pid is a live process. A zombie is not: it only waits to be reaped, and an orphaned
 * postmaster's new parent (PID 1 of a container) may never reap it.
 */
function pidRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const state = procState(pid);
  return state !== 'gone' && state !== 'Z' && state !== 'X';
}

/** Waits (polling, with a deadline) until none of `pids` runs; true when they are all gone. */
async function allGone(pids: number[], timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (!pids.some(pidRunning)) return true;
    if (Date.now() >= end) return false;
    await sleep(10);
  }
}

/**
 * The processes working in a cluster directory (Linux): a postmaster, its backends, an initdb
 * and its bootstrap server all have their working directory there. Only PostgreSQL's own
 * command names count, so a shell someone opened in the directory is left alone.
 */
function processesIn(dir: string): number[] {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const p of pids) {
    try {
      const cwd = readlinkSync(`/proc/${p}/cwd`);
      if (cwd !== dir && !cwd.startsWith(`${dir}/`)) continue;
      if (CLUSTER_COMMS.has(readFileSync(`/proc/${p}/comm`, 'utf8').trim())) out.push(Number(p));
    } catch {
      // gone, a zombie, or not ours to look at
    }
  }
  return out;
}

/**
 * Stops what still runs in a leftover cluster directory: the postmaster named by
 * `data/postmaster.pid` gets SIGQUIT (immediate shutdown: it ends its backends and waits for
 * them), anything left SIGKILL. A pid is only signalled when it is PostgreSQL working in this
 * directory (/proc), or — without /proc — never: removing the directory then makes a
 * postmaster shut itself down within a minute (it rechecks its lock file).
 * Resolves with false when something would not die.
 */
async function stopLeftoverProcesses(dir: string): Promise<boolean> {
  const real = await fs.realpath(dir).catch(() => dir);
  const inDir = processesIn(real);
  if (inDir.length === 0) return true;
  const pm = await pmStatus(path.join(dir, 'data'));
  if (pm && inDir.includes(pm.pid)) {
    signalPid(pm.pid, 'SIGQUIT');
    await allGone([pm.pid], STOP_GRACE_MS);
  }
  const rest = processesIn(real);
  for (const p of rest) signalPid(p, 'SIGKILL');
  return allGone([...inDir, ...rest], STOP_GRACE_MS);
}

/**
 * Removes the throwaway clusters that dead processes left in `parentDir` (default os.tmpdir()):
 * every `hb-drill-*` directory (not a symlink) with a marker that we own and whose owner process
 * is gone — its PostgreSQL processes are stopped first (a postmaster outlives a SIGKILLed Node
 * process unless the parent-death guard ended it). A directory without the marker, with a
 * marker someone else wrote, or whose owner still runs (or runs on another host) is never
 * touched. Resolves with the directories removed; one that cannot be cleaned is logged and left
 * for the next call.
 */
export async function removeLeftoverClusters(parentDir?: string, opts: { log?: (msg: string) => void } = {}): Promise<string[]> {
  const log = opts.log ?? (() => {});
  const parent = path.resolve(parentDir ?? os.tmpdir());
  let entries: Dirent[];
  try {
    entries = await fs.readdir(parent, { withFileTypes: true });
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const ent of entries) {
    if (!ent.name.startsWith(THROWAWAY_DIR_PREFIX) || !ent.isDirectory()) continue;
    const dir = path.join(parent, ent.name);
    const marker = await readMarker(dir);
    if (!marker || isAlive(marker.owner)) continue;
    if (!(await stopLeftoverProcesses(dir))) {
      log(`the PostgreSQL processes of leftover throwaway cluster ${dir} would not stop; left for the next clean-up`);
      continue;
    }
    try {
      await fs.rm(dir, { recursive: true, force: true, maxRetries: 3 });
      removed.push(dir);
      log(`removed throwaway PostgreSQL ${marker.major} directory ${dir} left by process ${marker.owner.pid}`);
    } catch (e) {
      log(`could not remove leftover throwaway cluster ${dir}: ${redact((e as Error).message)}`);
    }
  }
  return removed;
}
