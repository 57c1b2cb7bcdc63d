/**
 * Benchmarks (`npm run bench [suite…]`). Measured side by side in one run, alternating pairs,
 * reporting medians and ratios, so a noisy shared machine affects both sides alike.
 *
 * Suites:
 *   dump     hybrid-backup manual vs bare `pg_dump -f` and `pg_dump -f && sync` (plain), gzip mode vs
 *            `pg_dump | gzip -6`; CPU seconds per GB of each whole process tree, and the peak RSS of
 *            the hybrid-backup process.
 *   restore  `restore --create` of a plain and a gzip backup vs `createdb && psql -1 -f` and
 *            `createdb && gunzip -c | psql -1`, with CPU per GB and peak RSS.
 *   service  `list --json` round trips through the control socket with 10,000 backups in the
 *            ledger (p50, p99), and the idle service's RSS and CPU.
 *   drill    on a database whose plain backup is ≥ 1 GiB: `restore-test` (on its own throwaway
 *            server, with the data and catalog comparison) against `createdb && psql -f` of the
 *            same file, the throwaway server's start apart; a backup with and without the catalog
 *            fingerprint; and uploading the backup to Storage (a local fake of the Storage API)
 *            against `curl -T`, with the upload's peak RSS.
 *   offsite  a backup with `encryption.local: true` against the same backup without; uploading the
 *            encrypted backup to a local S3 server (Ceph's radosgw, as the tests start it) with
 *            `offsite-sync` against a plain signed `curl -T` of the same number of bytes; both
 *            processes' peak RSS.
 *
 * Environment: BENCH_PG_URL (admin URL, default postgresql://postgres@127.0.0.1:5432/postgres),
 * BENCH_SIZE_MB (table data to generate, default 1024), BENCH_PAIRS (default 3),
 * BENCH_KEEP_DB=1 keeps (and reuses) the generated database; BENCH_DRILL_SIZE_MB (the drill suite's
 * table data, default 1.25 × BENCH_SIZE_MB, so its backup is ≥ 1 GiB); BENCH_BACKUPS (default 10000),
 * BENCH_REQUESTS (default 500), BENCH_IDLE_SECONDS (default 60) for the service suite;
 * BENCH_OFFSITE=upload (or local) runs only the upload (or the encryption.local) half of the offsite suite.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import pg from 'pg';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'dist/src/cli.js');
const ADMIN = process.env.BENCH_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const SIZE_MB = Number(process.env.BENCH_SIZE_MB ?? 1024);
const PAIRS = Number(process.env.BENCH_PAIRS ?? 3);

function dbUrl(name: string): string {
  const u = new URL(ADMIN);
  u.pathname = `/${name}`;
  return u.toString();
}

async function sql(url: string, text: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MB`;
const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** Builds a database of about `sizeMb` of table data: narrow and wide rows, jsonb, text. */
async function buildDatabase(name: string, sizeMb: number): Promise<number> {
  const url = dbUrl(name);
  const exists = (await sql(ADMIN, `select 1 from pg_database where datname = '${name}'`)).rowCount;
  if (exists && process.env.BENCH_KEEP_DB) {
    const r = await sql(url, `select coalesce(sum(pg_table_size(c.oid)), 0)::bigint as b from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and c.relkind = 'r'`);
    const b = Number(r.rows[0].b);
    if (Math.abs(b / 1024 / 1024 - sizeMb) / sizeMb < 0.2) return b;
  }
  await sql(ADMIN, `drop database if exists "${name}" with (force)`);
  await sql(ADMIN, `create database "${name}"`);
  // bytes per row, roughly, on disk
  const share = { narrow: 0.3, wide: 0.3, docs: 0.25, texts: 0.15 };
  const perRow = { narrow: 52, wide: 410, docs: 512, texts: 2200 };
  const rows = (k: keyof typeof share) => Math.max(1000, Math.round((sizeMb * 1024 * 1024 * share[k]) / perRow[k]));
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('set synchronous_commit = off');
    await c.query(`create table narrow (id bigint primary key, a int, b int, at timestamptz)`);
    await c.query(`create table wide (id bigint primary key, ${Array.from({ length: 10 }, (_, i) => `c${i} text`).join(', ')})`);
    await c.query(`create table docs (id bigint primary key, doc jsonb)`);
    await c.query(`create table texts (id bigint primary key, body text)`);
    // stored as written (no TOAST compression), so table size and dump size stay comparable
    await c.query(`alter table texts alter column body set storage external`);
    const batch = 200_000;
    const fill = async (table: string, n: number, select: string) => {
      for (let from = 1; from <= n; from += batch) {
        const to = Math.min(n, from + batch - 1);
        await c.query(`insert into ${table} select ${select} from generate_series(${from}, ${to}) g`);
      }
    };
    await fill('narrow', rows('narrow'), `g, (g * 7) % 1000, g % 13, timestamptz '2024-01-01' + g * interval '1 second'`);
    await fill('wide', rows('wide'), `g, ${Array.from({ length: 10 }, (_, i) => `md5((g + ${i})::text) || ' ' || (g % 97)::text`).join(', ')}`);
    await fill('docs', rows('docs'), `g, jsonb_build_object('id', g, 'name', 'user ' || g, 'tags', jsonb_build_array('a', 'b', g % 10), 'profile', jsonb_build_object('bio', repeat(md5(g::text), 10), 'score', g % 1000))`);
    // texts compress the way real prose does: repetitive, not random
    await fill('texts', rows('texts'), `g, repeat('The quick brown fox ' || (g % 1000)::text || ' jumps over the lazy dog. ', 45)`);
    await c.query('vacuum analyze');
    const r = await c.query(`select sum(pg_table_size(c.oid))::bigint as b from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public' and c.relkind = 'r'`);
    return Number(r.rows[0].b);
  } finally {
    await c.end();
  }
}

/** CPU seconds used by this process's waited-for children and their descendants (cutime + cstime). */
/** The fields of /proc/<pid>/stat after the command name (utime is [11], stime [12]). */
function statFields(pid: string): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

function childrenCpu(): number {
  const f = statFields('self');
  return (Number(f[13]) + Number(f[14])) / 100;
}

/**
 * CPU seconds used so far by the running processes whose command name matches `name` (a server
 * the bench started and that is still running, which childrenCpu() does not count until it is
 * reaped): radosgw and ceph-osd for the S3 server.
 */
function processCpu(name: RegExp): number {
  let total = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (!name.test(readFileSync(`/proc/${pid}/comm`, 'utf8').trim())) continue;
      const f = statFields(pid);
      total += (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/**
 * Runs a command, timing it; `cpu` is the CPU seconds of the command and everything it started
 * (pg_dump, gzip, psql: not the server's backend, the same for both sides); for `rss: true` samples
 * the process's VmHWM until it exits.
 */
async function timed(cmd: string, args: string[], opts: { env?: Record<string, string>; shell?: boolean; rss?: boolean } = {}): Promise<{ ms: number; peakRss: number; cpu: number }> {
  const cpu0 = childrenCpu();
  const t0 = process.hrtime.bigint();
  const child = execa(cmd, args, { env: opts.env, shell: opts.shell, stdout: 'ignore', stderr: 'pipe' });
  let peak = 0;
  let timer: NodeJS.Timeout | undefined;
  if (opts.rss && child.pid) {
    const pid = child.pid;
    timer = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (m) peak = Math.max(peak, Number(m[1]) * 1024);
      } catch {
        // exited
      }
    }, 20);
  }
  try {
    await child;
  } finally {
    if (timer) clearInterval(timer);
  }
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, peakRss: peak, cpu: childrenCpu() - cpu0 };
}

/** Median, spread (min–max) and the per-pair ratios of a measurement. */
const spread = (xs: number[]) => `${sec(Math.min(...xs))}–${sec(Math.max(...xs))}`;
const pairRatios = (a: number[], b: number[]) => a.map((x, i) => (x / b[i]!).toFixed(2)).join(', ');

async function dumpSuite(): Promise<string> {
  const name = 'hb_bench_dump';
  console.error(`building a database with about ${SIZE_MB} MB of table data…`);
  const bytes = await buildDatabase(name, SIZE_MB);
  const url = dbUrl(name);
  const work = mkdtempSync(path.join(os.tmpdir(), 'hb-bench-'));
  const env = (compression: string) => {
    const cfg = path.join(work, `${compression}.json`);
    writeFileSync(cfg, JSON.stringify({ dump: { compression, freeSpaceFactor: 1 } }));
    return { ...process.env, DATABASE_URL: url, BACKUP_DIR: path.join(work, 'backups'), HYBRID_BACKUP_CONFIG: cfg } as Record<string, string>;
  };
  const major = Math.floor(Number((await sql(url, `select current_setting('server_version_num') as v`)).rows[0].v) / 10000);
  const pgDump = `/usr/lib/postgresql/${major}/bin/pg_dump`;
  const clean = () => rmSync(path.join(work, 'backups'), { recursive: true, force: true });
  const out = path.join(work, 'bare.sql');

  const keys = ['bare', 'bareSync', 'hb', 'bareGz', 'hbGz'] as const;
  const results: Record<string, number[]> = Object.fromEntries(keys.map((k) => [k, []]));
  const cpu: Record<string, number[]> = Object.fromEntries(keys.map((k) => [k, []]));
  const rss: Record<string, number[]> = { hb: [], hbGz: [] };
  const fixed: Record<string, number[]> = { bare: [], hb: [] };
  let plainBytes = 0;
  let gzBytes = 0;
  try {
    for (let i = 0; i < PAIRS; i++) {
      const pairs: Array<[string, () => Promise<{ ms: number; peakRss: number; cpu: number }>]> = [
        ['bare', () => timed(pgDump, ['--format=plain', '-f', out, '-d', url])],
        ['hb', () => timed('node', [CLI, 'manual', 'bench'], { env: env('none'), rss: true })],
        // the same durability as hybrid-backup: the file fsynced before the command returns
        ['bareSync', () => timed('sh', ['-c', `${pgDump} --format=plain -f '${out}' -d '${url}' && sync '${out}'`])],
        ['bareGz', () => timed('bash', ['-c', `set -o pipefail; ${pgDump} --format=plain -d '${url}' | gzip -6 > '${out}.gz'`])],
        ['hbGz', () => timed('node', [CLI, 'manual', 'bench'], { env: env('gzip'), rss: true })],
      ];
      // alternate the order inside each pair
      const order = i % 2 === 0 ? [0, 1, 2, 3, 4] : [1, 0, 2, 4, 3];
      for (const j of order) {
        const [key, run] = pairs[j]!;
        const r = await run();
        results[key]!.push(r.ms);
        cpu[key]!.push(r.cpu);
        if (r.peakRss) rss[key]!.push(r.peakRss);
        if (key === 'hb' || key === 'hbGz') {
          const file = readdirSync(path.join(work, 'backups')).find((f) => /\.sql(\.gz)?$/.test(f))!;
          const size = statSync(path.join(work, 'backups', file)).size;
          if (key === 'hb') plainBytes = size;
          else gzBytes = size;
        }
        console.error(`  pair ${i + 1}: ${key.padEnd(8)} ${sec(r.ms)}  cpu ${r.cpu.toFixed(2)} s${r.peakRss ? `  peak RSS ${mb(r.peakRss)}` : ''}`);
        rmSync(out, { force: true });
        rmSync(`${out}.gz`, { force: true });
        clean();
      }
    }
    // Fixed cost: both tools on an empty database.
    const empty = 'hb_bench_empty';
    await sql(ADMIN, `drop database if exists "${empty}" with (force)`);
    await sql(ADMIN, `create database "${empty}"`);
    const emptyEnv = { ...env('none'), DATABASE_URL: dbUrl(empty), BACKUP_DIR: path.join(os.tmpdir(), `hb-bench-empty-${process.pid}`) };
    for (let i = 0; i < 5; i++) {
      fixed.bare!.push((await timed(pgDump, ['--format=plain', '-f', `${emptyEnv.BACKUP_DIR}.sql`, '-d', dbUrl(empty)])).ms);
      fixed.hb!.push((await timed('node', [CLI, 'manual'], { env: emptyEnv })).ms);
    }
    rmSync(emptyEnv.BACKUP_DIR, { recursive: true, force: true });
    rmSync(`${emptyEnv.BACKUP_DIR}.sql`, { force: true });
    await sql(ADMIN, `drop database if exists "${empty}" with (force)`);
  } finally {
    rmSync(work, { recursive: true, force: true });
    if (!process.env.BENCH_KEEP_DB) await sql(ADMIN, `drop database if exists "${name}" with (force)`);
  }
  const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)])) as Record<string, number>;
  const c = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, median(v)])) as Record<string, number>;
  const gb = plainBytes / 1024 ** 3;
  const perGb = (k: string) => `${(c[k]! / gb).toFixed(2)} CPU s/GB`;
  const verdict = (ok: boolean) => (ok ? 'meets target' : 'MISSES target');
  const row = (what: string, a: string, b: string, base: string, target: string, limit: number | null) => {
    const ratio = m[a]! / m[b]!;
    return `| ${what} | ${sec(m[a]!)} (${spread(results[a]!)}; ${perGb(a)}) | ${sec(m[b]!)} (${spread(results[b]!)}; ${perGb(b)}) ${base} | ${ratio.toFixed(3)} (pairs ${pairRatios(results[a]!, results[b]!)}) | ${limit === null ? target : `${target}, ${verdict(ratio <= limit)}`} |`;
  };
  const peak = (k: string) => Math.max(...rss[k]!);
  return [
    `### dump (${mb(bytes)} of table data: a ${mb(plainBytes)} plain dump, ${mb(gzBytes)} gzipped; ${PAIRS} alternating pairs, medians, spread min–max, CPU of the whole process tree)`,
    '',
    '| measurement | hybrid-backup | baseline | ratio (per pair) | target |',
    '|---|---|---|---|---|',
    row('plain dump', 'hb', 'bare', '(`pg_dump -f`)', '≤ 1.05', 1.05),
    row('plain dump, same durability', 'hb', 'bareSync', '(`pg_dump -f && sync file`)', '≤ 1.0', 1.0),
    row('gzip dump', 'hbGz', 'bareGz', '(`pg_dump \\| gzip -6`)', '≤ 0.6', 0.6),
    `| fixed cost: empty database | ${sec(median(fixed.hb!))} | ${sec(median(fixed.bare!))} (\`pg_dump -f\`) | +${sec(median(fixed.hb!) - median(fixed.bare!))} | (context) |`,
    `| peak RSS of the hybrid-backup process, plain / gzip | ${mb(peak('hb'))} / ${mb(peak('hbGz'))} | | | ≤ 150 MB, ${verdict(Math.max(peak('hb'), peak('hbGz')) <= 150 * 1024 * 1024)} |`,
    '',
    `raw (ms): ${JSON.stringify(Object.fromEntries(Object.entries({ ...results, fixedBare: fixed.bare!, fixedHb: fixed.hb! }).map(([k, v]) => [k, v.map((x) => Math.round(x))])))}`,
    `CPU (s): ${JSON.stringify(Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v.map((x) => Number(x.toFixed(2)))])))}`,
  ].join('\n');
}

/**
 * `restore` of a plain and of a gzip backup (each into a new database, `--create`) against what an
 * operator would type: `createdb && psql -1 -f <file>` and `createdb && gunzip -c <file> | psql -1`
 * (`-1`: one transaction, as `restore` runs it, so a failed restore leaves nothing).
 */
async function restoreSuite(): Promise<string> {
  const name = 'hb_bench_dump';
  console.error(`building a database with about ${SIZE_MB} MB of table data…`);
  const bytes = await buildDatabase(name, SIZE_MB);
  const url = dbUrl(name);
  const work = mkdtempSync(path.join(os.tmpdir(), 'hb-brest-'));
  const major = Math.floor(Number((await sql(url, `select current_setting('server_version_num') as v`)).rows[0].v) / 10000);
  const bin = `/usr/lib/postgresql/${major}/bin`;
  const env = (compression: string) => {
    const cfg = path.join(work, `${compression}.json`);
    writeFileSync(cfg, JSON.stringify({ dump: { compression, freeSpaceFactor: 1 } }));
    return { ...process.env, DATABASE_URL: url, BACKUP_DIR: path.join(work, 'b'), HYBRID_BACKUP_CONFIG: cfg } as Record<string, string>;
  };
  const keys = ['psql', 'hb', 'gunzipPsql', 'hbGz'] as const;
  const results: Record<string, number[]> = Object.fromEntries(keys.map((k) => [k, []]));
  const cpu: Record<string, number[]> = Object.fromEntries(keys.map((k) => [k, []]));
  const rss: number[] = [];
  let plain = { id: 0, file: '', bytes: 0 };
  let gz = { id: 0, file: '', bytes: 0 };
  const scratch = 'hb_bench_restore';
  const drop = () => sql(ADMIN, `drop database if exists "${scratch}" with (force)`);
  const psql = `${bin}/psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d '${dbUrl(scratch)}'`;
  const createdb = `${bin}/createdb -h '${new URL(ADMIN).hostname}' -U '${new URL(ADMIN).username || 'postgres'}' ${scratch}`;
  try {
    plain = JSON.parse((await execa('node', [CLI, 'manual', '--json'], { env: env('none') })).stdout);
    gz = JSON.parse((await execa('node', [CLI, 'manual', '--json'], { env: env('gzip') })).stdout);
    console.error(`  backups: ${mb(plain.bytes)} plain, ${mb(gz.bytes)} gzip`);
    for (let i = 0; i < PAIRS; i++) {
      const pairs: Array<[string, () => Promise<{ ms: number; peakRss: number; cpu: number }>]> = [
        ['psql', () => timed('bash', ['-c', `set -e; ${createdb}; ${psql} -f '${plain.file}' > /dev/null`])],
        ['hb', () => timed('node', [CLI, 'restore', String(plain.id), '--target', dbUrl(scratch), '--create'], { env: env('none'), rss: true })],
        ['gunzipPsql', () => timed('bash', ['-c', `set -eo pipefail; ${createdb}; gunzip -c '${gz.file}' | ${psql} -f - > /dev/null`])],
        ['hbGz', () => timed('node', [CLI, 'restore', String(gz.id), '--target', dbUrl(scratch), '--create'], { env: env('gzip'), rss: true })],
      ];
      const order = i % 2 === 0 ? [0, 1, 2, 3] : [1, 0, 3, 2];
      for (const j of order) {
        const [key, run] = pairs[j]!;
        await drop();
        const r = await run();
        results[key]!.push(r.ms);
        cpu[key]!.push(r.cpu);
        if (r.peakRss) rss.push(r.peakRss);
        console.error(`  pair ${i + 1}: ${key.padEnd(10)} ${sec(r.ms)}  cpu ${r.cpu.toFixed(2)} s${r.peakRss ? `  peak RSS ${mb(r.peakRss)}` : ''}`);
      }
    }
  } finally {
    await drop();
    rmSync(work, { recursive: true, force: true });
    if (!process.env.BENCH_KEEP_DB) await sql(ADMIN, `drop database if exists "${name}" with (force)`);
  }
  const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)])) as Record<string, number>;
  const c = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, median(v)])) as Record<string, number>;
  const gb = plain.bytes / 1024 ** 3;
  const perGb = (k: string) => `${(c[k]! / gb).toFixed(2)} CPU s/GB`;
  const verdict = (ok: boolean) => (ok ? 'meets target' : 'MISSES target');
  const row = (what: string, a: string, b: string, base: string) => {
    const ratio = m[a]! / m[b]!;
    return `| ${what} | ${sec(m[a]!)} (${spread(results[a]!)}; ${perGb(a)}) | ${sec(m[b]!)} (${spread(results[b]!)}; ${perGb(b)}) ${base} | ${ratio.toFixed(3)} (pairs ${pairRatios(results[a]!, results[b]!)}) | ≤ 1.05, ${verdict(ratio <= 1.05)} |`;
  };
  return [
    `### restore (${mb(bytes)} of table data: a ${mb(plain.bytes)} plain and a ${mb(gz.bytes)} gzip backup; ${PAIRS} alternating pairs, medians, spread min–max, CPU of the client process tree)`,
    '',
    '| measurement | hybrid-backup | baseline | ratio (per pair) | target |',
    '|---|---|---|---|---|',
    row('restore, plain', 'hb', 'psql', '(`createdb && psql -1 -f`)'),
    row('restore, gzip', 'hbGz', 'gunzipPsql', '(`createdb && gunzip -c \\| psql -1`)'),
    `| peak RSS of the hybrid-backup process | ${mb(Math.max(...rss))} | | | ≤ 150 MB, ${verdict(Math.max(...rss) <= 150 * 1024 * 1024)} |`,
    '',
    `raw (ms): ${JSON.stringify(Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.map((x) => Math.round(x))])))}`,
    `CPU (s): ${JSON.stringify(Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v.map((x) => Number(x.toFixed(2)))])))}`,
  ].join('\n');
}

/** Sends one request on a fresh connection and waits for its result line. */
/**
 * One request on a fresh connection. `ms` runs from connecting until the reply's last byte (its
 * newline) has arrived; `parseMs` is what the client then spends in JSON.parse, measured apart
 * because it is the client's cost, not the service's.
 */
function socketRoundTrip(socket: string, request: object): Promise<{ ms: number; parseMs: number; bytes: number; reply: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect({ path: socket });
    const chunks: Buffer[] = [];
    s.on('connect', () => s.write(`${JSON.stringify(request)}\n`));
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      if (d.includes(0x0a)) {
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        s.destroy();
        const t1 = process.hrtime.bigint();
        const text = Buffer.concat(chunks).toString('utf8');
        const line = text.slice(0, text.indexOf('\n'));
        const reply = JSON.parse(line) as { type: string; ok: boolean } & Record<string, unknown>;
        const parseMs = Number(process.hrtime.bigint() - t1) / 1e6;
        if (reply.type !== 'result' || !reply.ok) return reject(new Error(`unexpected reply ${line.slice(0, 200)}`));
        resolve({ ms, parseMs, bytes: Buffer.byteLength(line), reply });
      }
    });
    s.on('error', reject);
  });
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

function procStat(pid: number): { rss: number; cpuTicks: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rss: Number(/VmRSS:\s+(\d+)/.exec(status)![1]) * 1024, cpuTicks: Number(f[11]) + Number(f[12]) };
}

/**
 * A running service over a ledger of `n` backups written through the product's own Ledger (schema
 * and all), its schedules pushed a year out so that nothing runs meanwhile; `stop()` ends it and
 * removes its files.
 */
async function benchService(prefix: string, n: number, row: (i: number) => { at: string; kind: 'daily' | 'pre-change'; description: string | null }) {
  const work = mkdtempSync(path.join(os.tmpdir(), prefix));
  const backupDir = path.join(work, 'b');
  const socket = path.join(work, 's.sock');
  const cfg = path.join(work, 'c.json');
  writeFileSync(cfg, JSON.stringify({ schedules: { backup: '0 0 1 1 *', prune: '0 1 1 1 *' } }));
  mkdirSync(backupDir, { mode: 0o700 });
  const { Ledger } = await import('../src/ledger/ledger.js');
  const ledger = Ledger.open(backupDir);
  for (let i = 0; i < n; i++) {
    const { at, kind, description } = row(i);
    ledger.recordBackup({
      runId: null, kind, description,
      file: path.join(backupDir, `${at.replace(/[-:]/g, '').replace(/\.\d+Z/, 'Z')}_${kind}.sql`), bytes: 1_000_000 + i, sha256: 'ab'.repeat(32),
      compression: 'none', profile: 'full', status: 'ok', createdAt: at, finishedAt: at, durationMs: 1000, database: 'app', source: null,
      sourceSystemId: null, serverVersion: '15.20', pgDumpVersion: '15.20', tables: { 'public.t': i }, error: null,
    });
  }
  ledger.close();
  const env = { ...process.env, BACKUP_DIR: backupDir, HYBRID_BACKUP_SOCKET: socket, HYBRID_BACKUP_CONFIG: cfg, DATABASE_URL: dbUrl('postgres') } as Record<string, string>;
  const daemon = execa('node', [CLI, 'daemon'], { env, stdout: 'ignore', stderr: 'ignore', reject: false });
  const stop = async () => {
    daemon.kill('SIGTERM');
    await daemon;
    rmSync(work, { recursive: true, force: true });
  };
  for (let i = 0; ; i++) {
    try {
      await socketRoundTrip(socket, { command: 'ping' });
      break;
    } catch (e) {
      if (i > 600) {
        await stop();
        throw new Error(`the service did not answer within 30 s: ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { work, backupDir, socket, env, daemon, stop };
}

/** The resident service: list round trips with 10,000 backups in the ledger; idle RSS and CPU. */
async function serviceSuite(): Promise<string> {
  const N = Number(process.env.BENCH_BACKUPS ?? 10_000);
  const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 500);
  const IDLE_S = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
  const svc = await benchService('hb-bsvc-', N, (i) => {
    const at = new Date(Date.now() - (N - i) * 3600_000).toISOString();
    return { at, kind: i % 5 === 0 ? 'pre-change' : 'daily', description: i % 5 === 0 ? `change ${i}` : null };
  });
  const { backupDir, socket, daemon } = svc;
  try {
    const measure = async (request: object, expectBackups: number, before?: (i: number) => void) => {
      for (let i = 0; i < 20; i++) await socketRoundTrip(socket, request); // warm-up
      const first = await socketRoundTrip(socket, request);
      const got = (first.reply.doc as { backups: unknown[] }).backups.length;
      if (got !== expectBackups) throw new Error(`list answered ${got} backups, expected ${expectBackups}`);
      const ms: number[] = [];
      const parse: number[] = [];
      let bytes = 0;
      for (let i = 0; i < REQUESTS; i++) {
        before?.(i);
        const r = await socketRoundTrip(socket, request);
        ms.push(r.ms);
        parse.push(r.parseMs);
        bytes = r.bytes;
      }
      return { p50: percentile(ms, 50), p99: percentile(ms, 99), parse50: percentile(parse, 50), bytes };
    };
    // idle: let the service settle, then watch it do nothing
    await new Promise((r) => setTimeout(r, 10_000));
    const a = procStat(daemon.pid!);
    await new Promise((r) => setTimeout(r, IDLE_S * 1000));
    const b = procStat(daemon.pid!);
    const cpuPct = ((b.cpuTicks - a.cpuTicks) / 100 / IDLE_S) * 100;
    // What `list --json` sends (every backup), and what `list` on screen sends (the newest 100).
    const all = await measure({ command: 'list', args: { all: true } }, N);
    const list = await measure({ command: 'list', args: {} }, Math.min(100, N));
    // The ledger changed before every request (another process writes a row): no cached answer.
    const { default: Database } = await import('better-sqlite3');
    const writer = new Database(path.join(backupDir, 'ledger.db'));
    const touch = writer.prepare('UPDATE backups SET checked_at = ? WHERE id = ?');
    const changed = await measure({ command: 'list', args: { all: true } }, N, (i) => touch.run(new Date().toISOString(), 1 + (i % N)));
    writer.close();
    await new Promise((r) => setTimeout(r, 10_000));
    const afterLoad = procStat(daemon.pid!);
    const attack = await underAttack(socket, daemon.pid!, N);
    const verdict = (ok: boolean) => (ok ? 'meets target' : 'MISSES target');
    return [
      `### service (${N.toLocaleString('en-US')} backups in the ledger, ${REQUESTS} requests each, one connection per request)`,
      '',
      '| measurement | p50 | p99 | reply size | client JSON.parse, p50 (not in the round trip) | target |',
      '|---|---|---|---|---|---|',
      `| \`list --json\` round trip (all ${N.toLocaleString('en-US')}) | ${all.p50.toFixed(2)} ms | ${all.p99.toFixed(2)} ms | ${(all.bytes / 1024 / 1024).toFixed(1)} MB | ${all.parse50.toFixed(1)} ms | p99 < 20 ms, ${verdict(all.p99 < 20)} |`,
      `| the same, the ledger changed by another process before each request (no cached answer) | ${changed.p50.toFixed(2)} ms | ${changed.p99.toFixed(2)} ms | ${(changed.bytes / 1024 / 1024).toFixed(1)} MB | ${changed.parse50.toFixed(1)} ms | p99 < 20 ms, ${verdict(changed.p99 < 20)} |`,
      `| \`list\` on screen (the newest 100) | ${list.p50.toFixed(2)} ms | ${list.p99.toFixed(2)} ms | ${(list.bytes / 1024).toFixed(0)} KB | ${list.parse50.toFixed(2)} ms | (context) |`,
      '',
      '| idle service | value | target |',
      '|---|---|---|',
      `| RSS, idle after start | ${mb(b.rss)} | < 80 MB, ${verdict(b.rss < 80 * 1024 * 1024)} |`,
      `| RSS, idle again 10 s after the ${REQUESTS * 3 + 60} list requests above | ${mb(afterLoad.rss)} | (context) |`,
      `| CPU over ${IDLE_S} s idle | ${cpuPct.toFixed(2)} % of one core (${b.cpuTicks - a.cpuTicks} ticks) | ~0, ${verdict(cpuPct < 0.5)} |`,
      '',
      `under attack for ${ATTACK_S} s: 70 clients each sending one byte every 5 s, and 4 clients pipelining \`list --json\` (all ${N.toLocaleString('en-US')}) without reading the replies (each reconnecting when dropped)`,
      '',
      '| measurement | value | target |',
      '|---|---|---|',
      `| other clients' \`list --json\` answered meanwhile | ${attack.answered} of ${attack.asked} (p50 ${attack.p50.toFixed(1)} ms, max ${attack.max.toFixed(0)} ms) | all, ${verdict(attack.answered === attack.asked)} |`,
      `| service peak RSS during the attack | ${mb(attack.peakRss)} | < 200 MB, ${verdict(attack.peakRss < 200 * 1024 * 1024)} |`,
      `| service RSS 10 s after the attack | ${mb(attack.afterRss)} | (context) |`,
      `| pipelining clients dropped by the service | ${attack.dropped} | (context) |`,
    ].join('\n');
  } finally {
    await svc.stop();
  }
}

const ATTACK_S = Number(process.env.BENCH_ATTACK_SECONDS ?? 30);

/**
 * Attacks the service the way a hostile local user could (issue: "nothing for a hostile
 * neighbour"): slowloris clients trickling bytes, and clients pipelining big requests without
 * reading; meanwhile a well-behaved client keeps asking, and the service's RSS is watched.
 */
async function underAttack(socket: string, pid: number, n: number): Promise<{ asked: number; answered: number; p50: number; max: number; peakRss: number; afterRss: number; dropped: number }> {
  const end = Date.now() + ATTACK_S * 1000;
  const sockets = new Set<net.Socket>();
  let dropped = 0;
  const trickle = () => {
    const c = net.connect({ path: socket });
    c.on('error', () => {});
    sockets.add(c);
    const t = setInterval(() => (c.destroyed ? clearInterval(t) : c.write('{')), 5000);
    c.on('close', () => {
      clearInterval(t);
      sockets.delete(c);
      if (Date.now() < end) setTimeout(trickle, 100);
    });
  };
  const hog = () => {
    const c = net.connect({ path: socket });
    c.on('error', () => {});
    sockets.add(c);
    c.pause();
    c.on('connect', () => c.write('{"command":"list","args":{"all":true}}\n'.repeat(50)));
    c.on('close', () => {
      sockets.delete(c);
      dropped++;
      if (Date.now() < end) setTimeout(hog, 100);
    });
  };
  for (let i = 0; i < 70; i++) trickle();
  for (let i = 0; i < 4; i++) hog();
  let peakRss = 0;
  const watch = setInterval(() => (peakRss = Math.max(peakRss, procStat(pid).rss)), 100);
  const times: number[] = [];
  let asked = 0;
  try {
    while (Date.now() < end) {
      asked++;
      try {
        const r = await socketRoundTrip(socket, { command: 'list', args: { all: true } });
        if ((r.reply.doc as { backups: unknown[] }).backups.length === n) times.push(r.ms);
      } catch {
        // not answered: counted below
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    clearInterval(watch);
    for (const c of sockets) c.destroy();
  }
  await new Promise((r) => setTimeout(r, 10_000));
  return { asked, answered: times.length, p50: percentile(times, 50), max: Math.max(0, ...times), peakRss, afterRss: procStat(pid).rss, dropped };
}

/**
 * Restore drills and offsite uploads, on a database sized so its plain backup is at least 1 GiB
 * (BENCH_DRILL_SIZE_MB, default 1.25 × BENCH_SIZE_MB: table data dumps to about 84 % of its size).
 * Each round, in alternating order: `restore-test` against a plain `psql -f` restore of the same
 * file (createdb + psql; the drill adds the checksum, the counts and the drop), and `offsite-sync`
 * uploading the backup to a (local, fake) Storage API — its peak RSS — against `curl -T` streaming
 * the same file to the same endpoint.
 */
async function drillSuite(): Promise<string> {
  const name = 'hb_bench_drill';
  const sizeMb = Number(process.env.BENCH_DRILL_SIZE_MB ?? Math.round(SIZE_MB * 1.25));
  console.error(`building a database with about ${sizeMb} MB of table data…`);
  const bytes = await buildDatabase(name, sizeMb);
  const url = dbUrl(name);
  const work = mkdtempSync(path.join(os.tmpdir(), 'hb-bdrill-'));
  const cfg = path.join(work, 'c.json');
  writeFileSync(cfg, JSON.stringify({ dump: { freeSpaceFactor: 1 } }));
  const backupDir = path.join(work, 'b');
  // the drill starts its own throwaway server (the default), as in production
  const env = { ...process.env, DATABASE_URL: url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: cfg } as Record<string, string>;
  delete env.RESTORE_TEST_DATABASE_URL;
  delete env.SUPABASE_URL;
  delete env.SUPABASE_SERVICE_ROLE_KEY;
  const major = Math.floor(Number((await sql(url, `select current_setting('server_version_num') as v`)).rows[0].v) / 10000);
  const bin = `/usr/lib/postgresql/${major}/bin`;
  const { FakeStorage, SERVICE_KEY } = await import('../test/helpers/fake-storage.js');
  const { Ledger } = await import('../src/ledger/ledger.js');
  const storage = await new FakeStorage().start();
  const bucket = 'hybrid-backups';
  storage.buckets.set(bucket, { public: false });
  const upEnv = { ...env, SUPABASE_URL: storage.url, SUPABASE_SERVICE_ROLE_KEY: SERVICE_KEY };
  const results: Record<string, number[]> = { psql: [], drill: [], curl: [], upload: [], start: [], plain: [], fingerprinted: [] };
  const uploadRss: number[] = [];
  let fileBytes = 0;
  try {
    const backup = await execa('node', [CLI, 'manual', '--json'], { env });
    const b = JSON.parse(String(backup.stdout)) as { id: number; file: string; bytes: number };
    fileBytes = b.bytes;
    console.error(`  backup ${b.id}: ${mb(b.bytes)}`);
    for (let i = 0; i < PAIRS; i++) {
      const drillPair: Array<[string, () => Promise<number>]> = [
        [
          'psql',
          async () => {
            const scratch = `hb_bench_psql_${i}`;
            await sql(ADMIN, `drop database if exists "${scratch}" with (force)`);
            const t0 = process.hrtime.bigint();
            await execa(`${bin}/createdb`, ['-h', new URL(ADMIN).hostname, '-U', new URL(ADMIN).username || 'postgres', scratch]);
            await execa(`${bin}/psql`, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', b.file, '-d', dbUrl(scratch)], { stdout: 'ignore' });
            const ms = Number(process.hrtime.bigint() - t0) / 1e6;
            await sql(ADMIN, `drop database if exists "${scratch}" with (force)`);
            return ms;
          },
        ],
        [
          'drill',
          async () => {
            const ms = (await timed('node', [CLI, 'restore-test', String(b.id)], { env })).ms;
            // the throwaway server's start (initdb + start), reported apart
            const ledger = Ledger.open(backupDir);
            const run = ledger.lastRun('restore-drill');
            ledger.close();
            if (run?.status !== 'ok') throw new Error(`the drill did not pass: ${JSON.stringify(run?.error)}`);
            results.start!.push(Number(run.details?.startMs ?? NaN));
            return ms;
          },
        ],
      ];
      // the backup with and without the catalog fingerprint (data digests are always taken)
      const noFp = path.join(work, 'nofp.json');
      writeFileSync(noFp, JSON.stringify({ dump: { freeSpaceFactor: 1, fingerprint: false } }));
      const fpPair: Array<[string, () => Promise<number>]> = [
        ['plain', async () => (await timed('node', [CLI, 'manual', '--json'], { env: { ...env, HYBRID_BACKUP_CONFIG: noFp } })).ms],
        ['fingerprinted', async () => (await timed('node', [CLI, 'manual', '--json'], { env })).ms],
      ];
      const uploadPair: Array<[string, () => Promise<number>]> = [
        [
          'curl',
          async () =>
            (
              await timed('curl', [
                '-sS', '--fail', '-X', 'POST', '-T', b.file,
                '-H', `apikey: ${SERVICE_KEY}`, '-H', `Authorization: Bearer ${SERVICE_KEY}`, '-H', 'x-upsert: true', '-H', 'content-type: application/sql',
                `${storage.url}/storage/v1/object/${bucket}/curl-${path.basename(b.file)}`,
              ])
            ).ms,
        ],
        [
          'upload',
          async () => {
            // The same backup, uploaded again: the ledger forgets the previous copy first.
            const ledger = Ledger.open(backupDir);
            ledger.setCopy(b.id, 'supabase', { status: 'failed', key: path.basename(b.file), location: '', error: 'bench: upload again' });
            ledger.close();
            const uploads = () => storage.requests.filter((q) => q.method === 'POST' && q.path === `/storage/v1/object/${bucket}/${path.basename(b.file)}`).length;
            const before = uploads();
            const r = await timed('node', [CLI, 'offsite-sync'], { env: upEnv, rss: true });
            if (uploads() !== before + 1 || storage.size(`${bucket}/${path.basename(b.file)}`) !== b.bytes) throw new Error('offsite-sync did not upload the backup');
            uploadRss.push(r.peakRss);
            return r.ms;
          },
        ],
      ];
      for (const pair of [drillPair, uploadPair, fpPair]) {
        for (const j of i % 2 === 0 ? [0, 1] : [1, 0]) {
          const [key, run] = pair[j]!;
          const ms = await run();
          results[key]!.push(ms);
          console.error(`  pair ${i + 1}: ${key.padEnd(6)} ${sec(ms)}${key === 'upload' ? `  peak RSS ${mb(uploadRss.at(-1)!)}` : ''}`);
        }
      }
    }
  } finally {
    await storage.stop();
    rmSync(work, { recursive: true, force: true });
    if (!process.env.BENCH_KEEP_DB) await sql(ADMIN, `drop database if exists "${name}" with (force)`);
  }
  const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)])) as Record<string, number>;
  const ratio = m.drill! / m.psql!;
  const rss = median(uploadRss);
  const verdict = (ok: boolean) => (ok ? 'meets target' : 'MISSES target');
  const GiB = 1024 * 1024 * 1024;
  return [
    `### drill and upload (${mb(bytes)} of table data, a ${mb(fileBytes)} backup, ${PAIRS} alternating pairs, medians)`,
    '',
    '| measurement | hybrid-backup | baseline | ratio | target |',
    '|---|---|---|---|---|',
    `| backup size (plain) | ${mb(fileBytes)} | | | ≥ 1 GiB, ${verdict(fileBytes >= GiB)} |`,
    `| restore drill on its own throwaway server (checksum, start the server, restore, count rows, read every table back and compare its digest, fingerprint and compare the catalog, remove the server) | ${sec(m.drill!)} | ${sec(m.psql!)} (\`createdb && psql -f\` on the running server) | ${ratio.toFixed(3)} | ≤ 1.3, ${verdict(ratio <= 1.3)} |`,
    `| … of which starting the throwaway server (initdb + start) | ${sec(m.start!)} | | | (reported apart) |`,
    `| backup with the catalog fingerprint | ${sec(m.fingerprinted!)} | ${sec(m.plain!)} (without) | ${(m.fingerprinted! / m.plain!).toFixed(3)} | ≤ 1.05, ${verdict(m.fingerprinted! / m.plain! <= 1.05)} |`,
    `| upload of the backup (offsite-sync: checksum, upload, size check) | ${sec(m.upload!)} | ${sec(m.curl!)} (\`curl -T\`) | ${(m.upload! / m.curl!).toFixed(3)} | (context) |`,
    `| peak RSS uploading the backup (median of ${uploadRss.length}; max ${mb(Math.max(...uploadRss))}) | ${mb(rss)} | | | ≤ 150 MB, ${verdict(uploadRss.length > 0 && Math.min(...uploadRss) > 0 && rss <= 150 * 1024 * 1024)} |`,
    '',
    `raw (ms): ${JSON.stringify(Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.map((x) => Math.round(x))])))}; upload peak RSS (MB): ${JSON.stringify(uploadRss.map((x) => Math.round(x / 1024 / 1024)))}`,
  ].join('\n');
}

/** Encryption and S3 upload: see the module comment. */
async function offsiteSuite(): Promise<string> {
  const name = 'hb_bench_dump';
  console.error(`building a database with about ${SIZE_MB} MB of table data…`);
  await buildDatabase(name, SIZE_MB);
  const url = dbUrl(name);
  const { startS3Server } = await import('../test/helpers/s3-server.js');
  const { generateIdentity } = await import('../src/crypto/age.js');
  const { Ledger } = await import('../src/ledger/ledger.js');
  console.error('starting the S3 server (radosgw)…');
  const rgw = await startS3Server({ memoryBytes: 6 * 1024 ** 3 });
  const work = mkdtempSync(path.join(os.tmpdir(), 'hb-bench-off-'));
  const { recipient } = generateIdentity();
  const bucket = 'hb-bench';
  const target = { name: 's3', type: 's3', endpoint: rgw.endpoint, region: rgw.region, bucket, forcePathStyle: true, createBucket: true };
  const env = (tag: string, config: object) => {
    const cfg = path.join(work, `${tag}.json`);
    writeFileSync(cfg, JSON.stringify({ dump: { compression: 'none', freeSpaceFactor: 1 }, ...config }));
    return { ...process.env, DATABASE_URL: url, BACKUP_DIR: path.join(work, tag), HYBRID_BACKUP_CONFIG: cfg, AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, SUPABASE_URL: '' } as Record<string, string>;
  };
  const plainEnv = env('plain', { offsite: { enabled: false } });
  const encEnv = env('enc', { offsite: { enabled: false }, encryption: { ageRecipients: [recipient], local: true } });
  const upEnv = env('up', { offsite: { targets: [target] }, encryption: { ageRecipients: [recipient] } });
  const results: Record<string, number[]> = { plain: [], encrypted: [], upload: [], curl: [] };
  const rss: Record<string, number[]> = { plain: [], encrypted: [], upload: [] };
  // CPU seconds of the client and of the S3 server (radosgw, ceph-osd) during each upload
  const cpu: Record<string, { client: number[]; server: number[] }> = { upload: { client: [], server: [] }, curl: { client: [], server: [] } };
  const S3_SERVER = /^(radosgw|ceph-osd)$/;
  /** Runs one upload, keeping its client's CPU and the S3 server's. */
  const onServer = async <T extends { cpu: number }>(kind: 'upload' | 'curl', run: () => Promise<T>): Promise<T> => {
    const s0 = processCpu(S3_SERVER);
    const r = await run();
    cpu[kind]!.server.push(processCpu(S3_SERVER) - s0);
    cpu[kind]!.client.push(r.cpu);
    return r;
  };
  const s3url = (key: string) => `${rgw.endpoint}/${bucket}/${key}`;
  const curl = (args: string[]) => ['-fsS', '-o', '/dev/null', '--aws-sigv4', `aws:amz:${rgw.region}:s3`, '--user', `${rgw.accessKeyId}:${rgw.secretAccessKey}`, '-H', 'x-amz-content-sha256: UNSIGNED-PAYLOAD', ...args];
  try {
    for (let i = 0; i < (process.env.BENCH_OFFSITE === 'upload' ? 0 : PAIRS); i++) {
      for (const key of i % 2 === 0 ? ['plain', 'encrypted'] : ['encrypted', 'plain']) {
        const e = key === 'plain' ? plainEnv : encEnv;
        const r = await timed('node', [CLI, 'manual', 'bench'], { env: e, rss: true });
        results[key]!.push(r.ms);
        rss[key]!.push(r.peakRss);
        console.error(`  pair ${i + 1}: ${key.padEnd(9)} ${sec(r.ms)}  peak RSS ${mb(r.peakRss)}`);
        rmSync(e.BACKUP_DIR!, { recursive: true, force: true });
      }
    }
    // The upload: one plain backup (offsite copies off while it is taken), then offsite-sync
    // encrypting it to the S3 target, against curl sending a file of the encrypted size.
    if (process.env.BENCH_OFFSITE !== 'local') {
      const take = await execa('node', [CLI, 'manual', 'bench', '--json'], { env: { ...upEnv, HYBRID_BACKUP_CONFIG: path.join(work, 'plain.json') } });
      const b = JSON.parse(take.stdout) as { id: number; file: string };
      const { encryptedSize } = await import('../src/crypto/age.js');
      const size = encryptedSize(Number((await import('node:fs')).statSync(b.file).size), 1);
      const blob = path.join(work, 'same-size.bin');
      await execa('sh', ['-c', 'head -c "$1" /dev/urandom > "$2"', 'sh', String(size), blob]);
      // A fresh gateway's first large upload takes several times as long as the next ones (its
      // in-memory store growing): one unmeasured upload first (it also creates the bucket), so
      // neither side pays it.
      await execa('node', [CLI, 'offsite-sync'], { env: upEnv });
      await execa('curl', curl(['-X', 'DELETE', s3url(`${path.basename(b.file)}.age`)]));
      await rgw.reclaim();
      for (let i = 0; i < PAIRS; i++) {
        for (const key of i % 2 === 0 ? ['upload', 'curl'] : ['curl', 'upload']) {
          if (key === 'upload') {
            const l = Ledger.open(upEnv.BACKUP_DIR!);
            l.setCopy(b.id, 's3', { status: 'failed', key: `${path.basename(b.file)}.age`, location: '', error: 'bench: upload again' });
            l.close();
            const r = await onServer('upload', () => timed('node', [CLI, 'offsite-sync'], { env: upEnv, rss: true }));
            results.upload!.push(r.ms);
            rss.upload!.push(r.peakRss);
            console.error(`  pair ${i + 1}: upload    ${sec(r.ms)}  peak RSS ${mb(r.peakRss)}`);
            await execa('curl', curl(['-X', 'DELETE', s3url(`${path.basename(b.file)}.age`)]));
          } else {
            const r = await onServer('curl', () => timed('curl', curl(['-T', blob, s3url('curl.bin')])));
            results.curl!.push(r.ms);
            console.error(`  pair ${i + 1}: curl -T   ${sec(r.ms)}`);
            await execa('curl', curl(['-X', 'DELETE', s3url('curl.bin')]));
          }
          await rgw.reclaim();
        }
      }
    }
  } finally {
    await rgw.stop();
    rmSync(work, { recursive: true, force: true });
    if (!process.env.BENCH_KEEP_DB) await sql(ADMIN, `drop database if exists "${name}" with (force)`);
  }
  const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)])) as Record<string, number>;
  const peak = (k: string) => Math.max(...rss[k]!);
  const verdict = (ok: boolean) => (ok ? 'meets target' : 'MISSES target');
  return [
    `### offsite (${SIZE_MB} MB of table data, ${PAIRS} alternating pairs, medians)`,
    '',
    '| measurement | hybrid-backup | baseline | ratio | target |',
    '|---|---|---|---|---|',
    `| backup with encryption.local | ${sec(m.encrypted!)} | ${sec(m.plain!)} (the same backup, plain) | ${(m.encrypted! / m.plain!).toFixed(3)} | ≤ 1.10, ${verdict(m.encrypted! / m.plain! <= 1.1)} |`,
    `| upload of the encrypted backup to S3 (offsite-sync: read, check, encrypt, multipart, size check, kit) | ${sec(m.upload!)} | ${sec(m.curl!)} (\`curl -T\` of as many bytes, one signed PUT) | ${(m.upload! / m.curl!).toFixed(3)} | ≤ 1.2, ${verdict(m.upload! / m.curl! <= 1.2)} |`,
    `| peak RSS: plain backup / encrypted backup / upload | ${mb(peak('plain'))} / ${mb(peak('encrypted'))} / ${mb(peak('upload'))} | | | ≤ 150 MB, ${verdict(Math.max(peak('encrypted'), peak('upload')) <= 150 * 1024 * 1024)} |`,
    `| CPU-seconds of an upload, client + S3 server (medians) | ${median(cpu.upload!.client).toFixed(2)} + ${median(cpu.upload!.server).toFixed(2)} | ${median(cpu.curl!.client).toFixed(2)} + ${median(cpu.curl!.server).toFixed(2)} (curl) | | (context: ${os.cpus().length} cores) |`,
    '',
    `raw (ms): ${JSON.stringify(Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.map((x) => Math.round(x))])))}; peak RSS (MB): ${JSON.stringify(Object.fromEntries(Object.entries(rss).map(([k, v]) => [k, v.map((x) => Math.round(x / 1024 / 1024))])))}`,
  ].join('\n');
}

/**
 * The `storage` suite (issue 15): capturing a project's Storage files against a local fake of the
 * Storage API (test/helpers/fake-storage-project.ts) run in its own process.
 *   - incremental capture of 10,000 unchanged objects (after a first capture of them);
 *   - first capture of 1 GiB (32 files of 32 MiB) into the store on this disk, against a plain
 *     client on the same files: a raw node:http GET loop to nowhere (the fake's own throughput),
 *     and `curl` writing the files to the same disk followed by `sync`; and the same capture into
 *     a store on tmpfs, against the raw loop (the capture's own cost, no disk);
 *   - the capture process's peak RSS (getrusage maxrss).
 * BENCH_STORAGE_CONCURRENCY (default 4) is the capture's and the plain clients' concurrency.
 */
async function storageSuite(): Promise<string> {
  const { PROJECT_KEY } = await import('../test/helpers/fake-storage-project.js');
  const fakeModule = path.join(ROOT, 'dist/test/helpers/fake-storage-project.js');
  const storageModule = path.join(ROOT, 'dist/src/storage/index.js');
  const C = Number(process.env.BENCH_STORAGE_CONCURRENCY ?? 4);
  const work = mkdtempSync(path.join(os.tmpdir(), 'hb-bench-storage-'));
  const shm = statSync('/dev/shm', { throwIfNoEntry: false })?.isDirectory() ? mkdtempSync('/dev/shm/hb-bench-storage-') : null;
  const env = { ...process.env, HB_BENCH_KEY: PROJECT_KEY } as Record<string, string>;

  /** Starts the fake in its own process with a scenario; resolves with its URL and object names. */
  async function startFake(scenario: 'many' | 'big'): Promise<{ url: string; names: string[]; stop: () => Promise<void> }> {
    const script = `
      const { FakeStorageProject } = await import(${JSON.stringify(fakeModule)});
      const { randomBytes } = await import('node:crypto');
      const f = await new FakeStorageProject().start();
      f.addBucket('bench');
      const names = [];
      if (process.env.SCENARIO === 'many') {
        for (let i = 0; i < 10000; i++) { const n = 'folder ' + (i % 100) + '/file ' + i + '.txt'; f.put('bench', n, randomBytes(1024 + (i % 1024)), { contentType: 'text/plain' }); names.push(n); }
      } else {
        for (let i = 0; i < 32; i++) { const n = 'big/file ' + i + '.bin'; f.put('bench', n, { size: 32 << 20, seed: i + 1 }); names.push(n); }
      }
      process.stdout.write(JSON.stringify({ url: f.url, names }) + '\\n');
      process.stdin.resume();
      process.stdin.on('end', () => f.stop().then(() => process.exit(0)));
    `;
    const child = execa('node', ['--input-type=module', '-e', script], { env: { ...env, SCENARIO: scenario }, stdin: 'pipe', stdout: 'pipe', stderr: 'inherit', buffer: false, reject: false });
    const line = await new Promise<string>((resolve, reject) => {
      let acc = '';
      child.stdout!.on('data', (c: Buffer) => {
        acc += c;
        if (acc.includes('\n')) resolve(acc.slice(0, acc.indexOf('\n')));
      });
      child.on('exit', () => reject(new Error('the fake Storage process ended before it started')));
    });
    const { url, names } = JSON.parse(line) as { url: string; names: string[] };
    return {
      url,
      names,
      stop: async () => {
        child.stdin!.end();
        await child;
      },
    };
  }

  /** One capture in a fresh process: its time, stats and peak RSS. */
  async function capture(url: string, dir: string, previous: string | null, out: string | null): Promise<{ ms: number; cpuMs: number; maxRss: number; stats: Record<string, number>; complete: boolean }> {
    const script = `
      const s = await import(${JSON.stringify(storageModule)});
      const store = await s.StorageStore.open(process.env.DIR);
      const api = s.StorageApi.open({ url: process.env.URL, serviceRoleKey: process.env.HB_BENCH_KEY, maxSockets: ${C} + 2 });
      const previous = process.env.PREV ? await s.readManifestFile(process.env.PREV) : null;
      const t0 = performance.now();
      const r = await s.captureStorage({ api, store, previous, concurrency: ${C} });
      const ms = performance.now() - t0;
      if (process.env.OUT) await s.writeManifestFile(process.env.OUT, r.manifest);
      api.close();
      const cpu = process.cpuUsage();
      process.stdout.write(JSON.stringify({ ms, cpuMs: (cpu.user + cpu.system) / 1000, maxRss: process.resourceUsage().maxRSS * 1024, stats: r.manifest.stats, complete: r.complete }));
    `;
    const r = await execa('node', ['--input-type=module', '-e', script], { env: { ...env, URL: url, DIR: dir, PREV: previous ?? '', OUT: out ?? '' } });
    return JSON.parse(r.stdout) as { ms: number; cpuMs: number; maxRss: number; stats: Record<string, number>; complete: boolean };
  }

  /** The plain client: GET every object over keep-alive, C at a time, bytes thrown away. */
  async function rawLoop(url: string, names: string[]): Promise<{ ms: number; bytes: number; cpuMs: number }> {
    const script = `
      const http = await import('node:http');
      const names = JSON.parse(process.env.NAMES);
      const agent = new http.Agent({ keepAlive: true, maxSockets: ${C} });
      const key = process.env.HB_BENCH_KEY;
      let bytes = 0, next = 0;
      const get = (n) => new Promise((resolve, reject) => {
        const u = process.env.URL + '/storage/v1/object/authenticated/bench/' + n.split('/').map(encodeURIComponent).join('/');
        http.get(u, { agent, headers: { apikey: key, authorization: 'Bearer ' + key } }, (res) => { res.on('data', (c) => (bytes += c.length)); res.on('end', resolve); res.on('error', reject); }).on('error', reject);
      });
      const t0 = performance.now();
      await Promise.all(Array.from({ length: ${C} }, async () => { while (next < names.length) await get(names[next++]); }));
      const cpu = process.cpuUsage();
      process.stdout.write(JSON.stringify({ ms: performance.now() - t0, bytes, cpuMs: (cpu.user + cpu.system) / 1000 }));
      agent.destroy();
    `;
    const r = await execa('node', ['--input-type=module', '-e', script], { env: { ...env, URL: url, NAMES: JSON.stringify(names) } });
    return JSON.parse(r.stdout) as { ms: number; bytes: number; cpuMs: number };
  }

  /** curl fetching every object into files on the store's disk, C at a time, then `sync`. */
  async function curlToDisk(url: string, names: string[], dir: string): Promise<number> {
    mkdirSync(dir, { recursive: true });
    const cfg = path.join(work, 'curl.cfg');
    writeFileSync(cfg, names.map((n, i) => `url = "${url}/storage/v1/object/authenticated/bench/${n.split('/').map(encodeURIComponent).join('/')}"\noutput = "${path.join(dir, String(i))}"\n`).join(''));
    const t0 = process.hrtime.bigint();
    await execa('sh', ['-c', `curl -sS --fail -Z --parallel-max ${C} -H "apikey: $HB_BENCH_KEY" -H "authorization: Bearer $HB_BENCH_KEY" -K "$1" && sync -f "$2"`, 'sh', cfg, dir], { env });
    return Number(process.hrtime.bigint() - t0) / 1e6;
  }

  const rows: string[] = [];
  const raw: Record<string, number[]> = { incremental: [], firstMany: [], captureDisk: [], captureShm: [], plainRaw: [], plainCurl: [], cpuCapture: [], cpuRaw: [] };
  const rss: number[] = [];
  const verdict = (ok: boolean) => (ok ? 'meets target' : 'MISSES target');
  try {
    // 10,000 small objects: one first capture, then the unchanged ones again.
    const many = await startFake('many');
    try {
      const dir = path.join(work, 'many');
      const first = await capture(many.url, dir, null, path.join(work, 'many.json'));
      raw.firstMany!.push(first.ms);
      rss.push(first.maxRss);
      console.error(`  10,000 objects, first capture ${sec(first.ms)}  peak RSS ${mb(first.maxRss)}  ${JSON.stringify(first.stats)}`);
      for (let i = 0; i < PAIRS; i++) {
        const r = await capture(many.url, dir, path.join(work, 'many.json'), null);
        if (r.stats.fetched !== 0 || r.stats.reused !== 10000) throw new Error(`the incremental capture fetched ${r.stats.fetched}`);
        raw.incremental!.push(r.ms);
        rss.push(r.maxRss);
        console.error(`  run ${i + 1}: incremental ${sec(r.ms)}  peak RSS ${mb(r.maxRss)}`);
      }
    } finally {
      await many.stop();
    }
    // 1 GiB: alternating pairs.
    const big = await startFake('big');
    try {
      for (let i = 0; i < PAIRS; i++) {
        const p = await rawLoop(big.url, big.names);
        if (p.bytes !== 32 * (32 << 20)) throw new Error(`the plain client read ${p.bytes} bytes`);
        raw.plainRaw!.push(p.ms);
        raw.cpuRaw!.push(p.cpuMs);
        const d = path.join(work, `big-${i}`);
        const c = await capture(big.url, d, null, null);
        if (!c.complete || c.stats.bytesFetched !== 32 * (32 << 20)) throw new Error('the 1 GiB capture is not complete');
        raw.captureDisk!.push(c.ms);
        raw.cpuCapture!.push(c.cpuMs);
        rss.push(c.maxRss);
        rmSync(d, { recursive: true, force: true });
        const cu = await curlToDisk(big.url, big.names, path.join(work, `curl-${i}`));
        raw.plainCurl!.push(cu);
        rmSync(path.join(work, `curl-${i}`), { recursive: true, force: true });
        let s: { ms: number; maxRss: number } | null = null;
        if (shm) {
          s = await capture(big.url, path.join(shm, `big-${i}`), null, null);
          raw.captureShm!.push(s.ms);
          rss.push(s.maxRss);
          rmSync(path.join(shm, `big-${i}`), { recursive: true, force: true });
        }
        console.error(`  pair ${i + 1}: plain GET loop ${sec(p.ms)}, capture to disk ${sec(c.ms)} (peak RSS ${mb(c.maxRss)}), curl to disk + sync ${sec(cu)}${s ? `, capture to tmpfs ${sec(s.ms)} (peak RSS ${mb(s.maxRss)})` : ''}`);
      }
    } finally {
      await big.stop();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
    if (shm) rmSync(shm, { recursive: true, force: true });
  }
  const m = (k: string) => median(raw[k]!);
  const GiB = 1024 ** 3;
  const rate = (ms: number) => `${(GiB / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
  const peak = Math.max(...rss);
  rows.push(
    `### storage (10,000 small objects; 1 GiB in 32 files of 32 MiB; concurrency ${C}; ${PAIRS} runs, medians)`,
    '',
    '| measurement | hybrid-backup | plain client | ratio (throughput) | target |',
    '|---|---|---|---|---|',
    `| incremental capture of 10,000 unchanged objects (list 100 folders, compare, check the store holds each file) | ${sec(m('incremental'))} | | | ≤ 10 s, ${verdict(m('incremental') <= 10_000)} |`,
    `| first capture of the 10,000 (info + GET + hash + write + fsync each) | ${sec(m('firstMany'))} | | | (context) |`,
    `| first capture of 1 GiB into the store on tmpfs (the capture's own cost) | ${sec(m('captureShm'))} (${rate(m('captureShm'))}) | ${sec(m('plainRaw'))} (${rate(m('plainRaw'))}, node:http GET loop, bytes dropped) | ${(m('plainRaw') / m('captureShm')).toFixed(2)} | ≥ 0.80, ${verdict(m('plainRaw') / m('captureShm') >= 0.8)} |`,
    `| first capture of 1 GiB into the store on this disk | ${sec(m('captureDisk'))} (${rate(m('captureDisk'))}) | ${sec(m('plainCurl'))} (${rate(m('plainCurl'))}, \`curl -Z\` to files on the same disk, then \`sync\`) | ${(m('plainCurl') / m('captureDisk')).toFixed(2)} | ≥ 0.80, ${verdict(m('plainCurl') / m('captureDisk') >= 0.8)} |`,
    `| … the same against the GET loop dropping the bytes | | | ${(m('plainRaw') / m('captureDisk')).toFixed(2)} | (bounded by the disk) |`,
    `| CPU seconds of the process per GiB (user + system, process start included) | ${(m('cpuCapture') / 1000).toFixed(2)} s (capture to disk) | ${(m('cpuRaw') / 1000).toFixed(2)} s (GET loop) | | (context: ${os.cpus().length} CPUs, shared with the fake server) |`,
    `| peak RSS of a capture process (any run) | ${mb(peak)} | | | ≤ 150 MB, ${verdict(peak <= 150 * 1024 * 1024)} |`,
    '',
    `raw (ms): \`${JSON.stringify(Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, v.map((x) => Math.round(x))])))}\`; peak RSS (MB): \`${JSON.stringify(rss.map((x) => Math.round(x / 1024 / 1024)))}\``,
  );
  return rows.join('\n');
}


/**
 * The CLI's own start (issue 14.13): `list` through a running service, as a migration script calls
 * it, against bare `node -e 0` on the same machine, alternating, wall time of whole processes; and
 * the same `list` run from the compiled modules (the entry without the bundle beside it, as after a
 * bare `tsc`), to show what the bundle and its code cache are worth.
 */
async function cliSuite(): Promise<string> {
  const RUNS = Number(process.env.BENCH_CLI_RUNS ?? 30);
  const svc = await benchService('hb-bcli-', 100, (i) => ({ at: new Date(Date.now() - (100 - i) * 86_400_000).toISOString(), kind: 'daily', description: null }));
  const { work, env } = svc;
  // an install without the bundle: the entry copied, everything else in dist/src linked
  const modulesCli = path.join(work, 'm/dist/src/cli.js');
  mkdirSync(path.dirname(modulesCli), { recursive: true });
  copyFileSync(path.join(ROOT, 'package.json'), path.join(work, 'm/package.json'));
  copyFileSync(CLI, modulesCli);
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(work, 'm/node_modules'));
  for (const f of readdirSync(path.dirname(CLI))) {
    if (!f.startsWith('cli.js') && !f.startsWith('cli-bundle.')) symlinkSync(path.join(path.dirname(CLI), f), path.join(work, 'm/dist/src', f));
  }
  try {
    const out = { bare: [] as number[], list: [] as number[], version: [] as number[], modules: [] as number[] };
    const cpu = { bare: [] as number[], list: [] as number[], version: [] as number[], modules: [] as number[] };
    for (let i = 0; i < RUNS; i++) {
      const b = await timed('node', ['-e', '0']);
      const l = await timed('node', [CLI, 'list'], { env });
      const v = await timed('node', [CLI, '--version'], { env });
      const m = await timed('node', [modulesCli, 'list'], { env });
      out.bare.push(b.ms), out.list.push(l.ms), out.version.push(v.ms), out.modules.push(m.ms);
      cpu.bare.push(b.cpu), cpu.list.push(l.cpu), cpu.version.push(v.cpu), cpu.modules.push(m.cpu);
    }
    const ms = (xs: number[]) => `${median(xs).toFixed(0)} ms (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;
    const c = (xs: number[]) => `${(median(xs) * 1000).toFixed(0)} ms CPU`;
    return [
      `## CLI start (issue 14.13), ${new Date().toISOString().slice(0, 16)}Z, ${RUNS} alternating runs, medians (min–max)`,
      '',
      '| command | wall | CPU | target |',
      '|---|---|---|---|',
      `| \`node -e 0\` (Node's own start) | ${ms(out.bare)} | ${c(cpu.bare)} | |`,
      `| \`hybrid-backup list\` through the service (100 backups) | ${ms(out.list)} | ${c(cpu.list)} | ≤ 150 ms, ${median(out.list) <= 150 ? 'meets' : 'MISSES'} target |`,
      `| \`hybrid-backup --version\` | ${ms(out.version)} | ${c(cpu.version)} | |`,
      `| \`hybrid-backup list\` from the compiled modules (no bundle) | ${ms(out.modules)} | ${c(cpu.modules)} | |`,
      '',
      `\`list\` costs ${(median(out.list) - median(out.bare)).toFixed(0)} ms over Node's own start (${(median(out.modules) - median(out.bare)).toFixed(0)} ms from the compiled modules).`,
      '',
      `raw (ms): ${JSON.stringify(out)}`,
    ].join('\n');
  } finally {
    await svc.stop();
  }
}

const SUITES: Record<string, () => Promise<string>> = { dump: dumpSuite, restore: restoreSuite, service: serviceSuite, drill: drillSuite, offsite: offsiteSuite, storage: storageSuite, cli: cliSuite };

async function main(): Promise<void> {
  const wanted = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(SUITES);
  const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  const header = `machine: ${os.cpus().length} × ${cpu}, ${mb(os.totalmem())} RAM, Node ${process.version}, ${new Date().toISOString()}`;
  const parts = [header, ''];
  for (const s of wanted) {
    const fn = SUITES[s];
    if (!fn) throw new Error(`unknown suite ${s}; suites: ${Object.keys(SUITES).join(', ')}`);
    parts.push(await fn(), '');
  }
  console.log(parts.join('\n'));
}

await main();
