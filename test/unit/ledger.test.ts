import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { Ledger } from '../../src/ledger/ledger.js';
import { MIGRATIONS } from '../../src/ledger/migrations.js';
import { removeDir, tempDir } from '../helpers/cli.js';

const dirs: string[] = [];
const dir = () => {
  const d = tempDir('hbled');
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach(removeDir));

/** A pid that certainly belonged to a process that has exited. */
async function deadPid(): Promise<number> {
  const p = execa('true');
  await p;
  return p.pid!;
}

describe('ledger', () => {
  it('creates a WAL database at the newest schema version, and reopens it unchanged', () => {
    const d = dir();
    const l = Ledger.open(d);
    l.close();
    const db = new Database(path.join(d, 'ledger.db'));
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    db.close();
    Ledger.open(d).close();
  });

  it('refuses a ledger written by a newer version', () => {
    const d = dir();
    Ledger.open(d).close();
    const db = new Database(path.join(d, 'ledger.db'));
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    expect(() => Ledger.open(d)).toThrow(/newer than this hybrid-backup knows/);
  });

  it('marks runs of dead processes interrupted and deletes their partial files; leaves live ones alone', async () => {
    const d = dir();
    const l = Ledger.open(d);
    const mine = l.startRun('backup', 'cli', { kind: 'manual', description: 'live' });
    const orphan = l.startRun('backup', 'schedule', { kind: 'daily', description: null });
    const partial = path.join(d, 'x.sql.partial');
    writeFileSync(partial, 'half');
    l.setRunFiles(orphan.id, { partialPath: partial, finalPath: path.join(d, 'x.sql') });
    l.close();
    const db = new Database(path.join(d, 'ledger.db'));
    db.prepare('update runs set pid = ? where id = ?').run(await deadPid(), orphan.id);
    db.close();

    const again = Ledger.open(d);
    expect(again.recovered).toEqual([{ runId: orphan.id, job: 'backup', pid: expect.any(Number), removed: [partial] }]);
    expect(existsSync(partial)).toBe(false);
    expect(again.getRun(orphan.id)).toMatchObject({ status: 'interrupted', error: { code: 'interrupted' } });
    expect(again.getRun(mine.id)!.status).toBe('running');
    expect(again.listBackups()).toMatchObject([{ kind: 'daily', status: 'interrupted' }]);
    again.close();
  });

  it('hands the backup lock to one process at a time, and takes it over from a dead holder', async () => {
    const d = dir();
    const l = Ledger.open(d);
    expect(l.tryLock('backup', 1, 'backup run 1')).toBeNull();
    expect(l.tryLock('backup', 2, 'backup run 2')).toBeNull(); // re-entrant for the same process
    const db = new Database(path.join(d, 'ledger.db'));
    db.prepare('update locks set pid = 1, pid_start = null').run(); // pid 1 is alive and not us
    expect(l.tryLock('backup', 3, 'backup run 3')).toMatchObject({ pid: 1, purpose: 'backup run 2' });
    db.prepare('update locks set pid = ?').run(await deadPid());
    db.close();
    expect(l.tryLock('backup', 4, 'backup run 4')).toBeNull();
    l.unlock('backup');
    l.close();
  });
});

describe('ledger migrations', () => {
  it('moves the offsite copies of a ledger from before offsite targets (schema 7) to the "supabase" target', () => {
    const d = dir();
    const old = new Database(path.join(d, 'ledger.db'));
    old.pragma('journal_mode = WAL');
    for (let i = 0; i < 7; i++) old.exec(MIGRATIONS[i]!);
    old.pragma('user_version = 7');
    const insert = old.prepare(
      `insert into backups (kind, file, bytes, sha256, compression, profile, status, created_at, database, offsite_status, offsite_path, offsite_bytes, offsite_at, offsite_error)
       values ('daily', ?, 10, ?, 'none', 'full', ?, ?, 'app', ?, ?, ?, ?, ?)`,
    );
    insert.run('/srv/b/20261001T030000Z_daily.sql', 'aa'.repeat(32), 'ok', '2026-10-01T03:00:00.000Z', 'uploaded', 'hybrid-backups/prod/20261001T030000Z_daily.sql', 10, '2026-10-01T03:01:00.000Z', null);
    insert.run('/srv/b/20261002T030000Z_daily.sql', 'bb'.repeat(32), 'ok', '2026-10-02T03:00:00.000Z', 'failed', 'hybrid-backups/prod/20261002T030000Z_daily.sql', null, '2026-10-02T03:01:00.000Z', 'timeout');
    insert.run('/srv/b/20261003T030000Z_daily.sql', 'cc'.repeat(32), 'ok', '2026-10-03T03:00:00.000Z', null, null, null, null, null);
    old.close();
    const l = Ledger.open(d);
    const [third, second, first] = l.listBackups();
    expect(first!.offsiteCopies).toEqual([
      { target: 'supabase', status: 'uploaded', location: 'hybrid-backups/prod/20261001T030000Z_daily.sql', key: '20261001T030000Z_daily.sql', bytes: 10, sha256: 'aa'.repeat(32), encrypted: false, at: '2026-10-01T03:01:00.000Z', error: null },
    ]);
    expect(first!.offsite).toMatchObject({ status: 'uploaded', location: 'hybrid-backups/prod/20261001T030000Z_daily.sql' });
    expect(second!.offsiteCopies).toMatchObject([{ target: 'supabase', status: 'failed', key: '20261002T030000Z_daily.sql', error: 'timeout' }]);
    expect(third!.offsiteCopies).toEqual([]);
    // the pending work per target follows: the failed and the never-copied one
    expect(l.backupsToUpload('supabase').map((b) => b.id)).toEqual([third!.id, second!.id]);
    expect(l.backupsToUpload('b2').map((b) => b.id)).toEqual([third!.id, second!.id, first!.id]);
    l.close();
  });

  it('brings a ledger written before backups had a rev (schema 4) forward, keeping its rows and listing them right', () => {
    const d = dir();
    const old = new Database(path.join(d, 'ledger.db'));
    old.pragma('journal_mode = WAL');
    for (let i = 0; i < 4; i++) old.exec(MIGRATIONS[i]!);
    old.pragma('user_version = 4');
    const insert = old.prepare(`insert into backups (kind, file, bytes, sha256, compression, profile, status, created_at, database) values ('daily', ?, 1, ?, 'none', 'full', 'ok', ?, 'app')`);
    insert.run('/b/1.sql', 'aa'.repeat(32), '2026-10-01T03:00:00.000Z');
    insert.run('/b/2.sql', 'bb'.repeat(32), '2026-10-02T03:00:00.000Z');
    old.close();
    const l = Ledger.open(d);
    expect(JSON.parse(l.listBackupsJson()).map((b: { file: string }) => b.file)).toEqual(['/b/2.sql', '/b/1.sql']);
    // a change after the migration gets a rev above every backfilled one
    l.setPinned(1, true);
    expect(JSON.parse(l.listBackupsJson())[1]).toMatchObject({ id: 1, pinned: true });
    l.close();
    const db = new Database(path.join(d, 'ledger.db'));
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);
    expect(db.prepare('select id, rev from backups order by id').all()).toEqual([{ id: 1, rev: 3 }, { id: 2, rev: 2 }]);
    db.close();
  });
});

describe('listBackupsJson', () => {
  const base = {
    runId: null, kind: 'daily' as const, description: null, file: '/b/x.sql', bytes: 10, sha256: 'ab'.repeat(32), compression: 'none' as const,
    profile: 'full' as const, status: 'ok' as const, createdAt: '2026-11-01T03:00:00.000Z', finishedAt: '2026-11-01T03:00:01.000Z', durationMs: 1000,
    database: 'app', source: null, sourceSystemId: null, serverVersion: '15.20', pgDumpVersion: '15.20', tables: { 'public.t': 3 }, error: null,
  };

  it('carries each backup\'s Storage files equally in both, and follows a change to them', () => {
    const l = Ledger.open(dir());
    const storage = { complete: true, objects: 3, bytes: 300, files: 2, missing: 0, rowsWithoutFiles: 0, filesWithoutRows: 1, manifestFile: '/b/x.sql.storage.json', manifestSha256: 'ef'.repeat(32), summary: 'files complete: 3 objects, 300 bytes in 1 bucket', error: null };
    const a = l.recordBackup({ ...base, storage });
    const b = l.recordBackup({ ...base, createdAt: '2026-11-02T03:00:00.000Z', storage: { ...storage, complete: false, objects: 0, bytes: 0, files: 0, filesWithoutRows: 0, manifestFile: null, manifestSha256: null, summary: 'files INCOMPLETE: the capture failed', error: { code: 'storage-failed', message: 'refused "key"' } } });
    l.recordBackup({ ...base, createdAt: '2026-11-03T03:00:00.000Z' });
    expect(a.storage).toEqual(storage);
    expect(b.storage).toMatchObject({ complete: false, error: { code: 'storage-failed' } });
    const same = () => expect(JSON.parse(l.listBackupsJson())).toEqual(l.listBackups());
    same();
    expect(JSON.parse(l.listBackupsJson())[0].storage).toBeNull();
    l.recordStorageCapture(a.id, { ...storage, complete: false, missing: 1, summary: 'files INCOMPLETE: x' });
    same();
    expect(l.storageCapture(a.id)).toMatchObject({ complete: false, missing: 1 });
    l.close();
  });

  it('gives exactly the objects listBackups gives, for every shape of row, and follows every change', () => {
    const l = Ledger.open(dir());
    const a = l.recordBackup({ ...base, description: 'quote " and \\ and ünïcode ✓', kind: 'pre-change' });
    const b = l.recordBackup({ ...base, status: 'failed', sha256: null, bytes: 0, tables: {}, error: { code: 'dump-failed', message: 'pg_dump: error: "x"\nline 2' }, createdAt: '2026-11-02T03:00:00.000Z' });
    l.recordBackup({ ...base, kind: 'manual', createdAt: '2026-11-02T03:00:00.000Z', compression: 'gzip', finishedAt: null, durationMs: null, serverVersion: null });
    l.setPinned(a.id, true);
    l.setCopy(a.id, 'supabase', { status: 'uploaded', key: 'x.sql', location: 'hybrid-backups/x.sql', bytes: 10, sha256: 'ab'.repeat(32) });
    l.setCopy(a.id, 'b2', { status: 'uploaded', key: 'x.sql.age', location: 's3://b/x.sql.age', bytes: 210, sha256: 'cd'.repeat(32), encrypted: true });
    l.setCopy(b.id, 'supabase', { status: 'failed', key: 'y.sql', location: '', error: 'timeout' });
    const same = (filter: Parameters<Ledger['listBackups']>[0] = {}) => expect(JSON.parse(l.listBackupsJson(filter))).toEqual(l.listBackups(filter));
    same();
    same({ limit: 2 });
    same({ statuses: ['failed'] });
    same({ kind: 'manual' });
    same({ statuses: ['corrupt'] }); // none: []
    // the summary is the copy in the worst state; every copy is listed by target
    const [la] = l.listBackups({ kind: 'pre-change' });
    expect(la!.offsite).toMatchObject({ status: 'uploaded', location: 's3://b/x.sql.age' });
    expect(la!.offsiteCopies.map((c) => [c.target, c.status, c.encrypted])).toEqual([['b2', 'uploaded', true], ['supabase', 'uploaded', false]]);
    l.setCopy(a.id, 'b2', { status: 'failed', key: 'x.sql.age', location: 's3://b/x.sql.age', error: 'throttled' });
    same();
    expect(l.getBackup(a.id)!.offsite).toMatchObject({ status: 'failed', error: 'b2: throttled' });
    expect(l.listBackupsJson({ statuses: ['corrupt'] })).toBe('[]');
    // a change by this connection, then by another one, shows at once
    l.setIntegrity(a.id, 'corrupt');
    same();
    const other = new Database(path.join(path.dirname(l.file), 'ledger.db'));
    other.prepare('update backups set description = ? where id = ?').run('changed elsewhere', a.id);
    other.close();
    expect(JSON.parse(l.listBackupsJson()).find((x: { id: number }) => x.id === a.id).description).toBe('changed elsewhere');
    same();
    l.close();
  });

  it('keeps the full list right, row by row, through inserts, updates and deletes by another process', () => {
    const l = Ledger.open(dir());
    const ids = Array.from({ length: 5 }, (_, i) => l.recordBackup({ ...base, createdAt: `2026-11-0${i + 1}T03:00:00.000Z` }).id);
    const same = () => expect(JSON.parse(l.listBackupsJson())).toEqual(l.listBackups());
    same();
    const other = new Database(path.join(path.dirname(l.file), 'ledger.db'));
    other.pragma('busy_timeout = 5000');
    // an insert elsewhere with an older time than the newest: it must land in its place, not at the top
    other.prepare(`insert into backups (kind, file, bytes, sha256, compression, profile, status, created_at, database) values ('manual', '/b/y.sql', 5, ?, 'none', 'full', 'ok', '2026-11-03T12:00:00.000Z', 'app')`).run('cd'.repeat(32));
    same();
    expect((JSON.parse(l.listBackupsJson()) as Array<{ file: string }>).map((b) => b.file).indexOf('/b/y.sql')).toBe(2);
    // an update elsewhere, then one here
    other.prepare('update backups set status = ? where id = ?').run('pruned', ids[0]);
    same();
    l.setPinned(ids[1]!, true);
    same();
    // a row deleted by hand, and one deleted and another added in the same change: the count check rebuilds
    other.prepare('delete from backups where id = ?').run(ids[2]);
    same();
    other.transaction(() => {
      other.prepare('delete from backups where id = ?').run(ids[3]);
      other.prepare(`insert into backups (kind, file, bytes, sha256, compression, profile, status, created_at, database) values ('daily', '/b/z.sql', 7, ?, 'none', 'full', 'ok', '2026-11-09T03:00:00.000Z', 'app')`).run('ef'.repeat(32));
    })();
    same();
    expect(JSON.parse(l.listBackupsJson())).toHaveLength(5);
    // the row changed last deleted and another added at once: the new one still gets a newer rev
    other.transaction(() => {
      other.prepare('delete from backups where file = ?').run('/b/z.sql');
      other.prepare(`insert into backups (kind, file, bytes, sha256, compression, profile, status, created_at, database) values ('daily', '/b/w.sql', 9, ?, 'none', 'full', 'ok', '2026-11-10T03:00:00.000Z', 'app')`).run('0f'.repeat(32));
    })();
    same();
    expect((JSON.parse(l.listBackupsJson()) as Array<{ file: string }>)[0]!.file).toBe('/b/w.sql');
    // every write bumped a revision: the newest rev belongs to the newest change
    const top = other.prepare('select file from backups order by rev desc limit 1').pluck().get();
    expect(top).toBe('/b/w.sql');
    other.close();
    l.close();
  });
  it('never silently replaces a lost ledger: empty or missing beside sidecars is refused, unchanged; an unreadable one is refused, then moved aside by recovery', () => {
    const d = dir();
    writeFileSync(path.join(d, '20261124T031500Z_daily.sql.meta.json'), '{}');
    // missing: refused, and no file is left behind
    expect(() => Ledger.open(d)).toThrow(expect.objectContaining({ code: 'ledger-lost', hint: expect.stringMatching(/ledger-rebuild/) }));
    expect(existsSync(path.join(d, 'ledger.db'))).toBe(false);
    // truncated to nothing: refused, and still 0 bytes
    writeFileSync(path.join(d, 'ledger.db'), '');
    expect(() => Ledger.open(d)).toThrow(expect.objectContaining({ code: 'ledger-lost' }));
    expect(statSync(path.join(d, 'ledger.db')).size).toBe(0);
    // for ledger-rebuild it opens
    Ledger.open(d, { recover: true }).close();
    // garbage: refused; recovery moves it aside under a dated name and starts a new one
    writeFileSync(path.join(d, 'ledger.db'), 'this is not a database, only its ruins '.repeat(200));
    expect(() => Ledger.open(d)).toThrow(expect.objectContaining({ code: 'ledger-unreadable' }));
    const l = Ledger.open(d, { recover: true });
    expect(l.movedAside).toMatch(/ledger\.db\.unreadable-\d{8}T\d{6}Z$/);
    expect(readFileSync(l.movedAside!, 'utf8')).toMatch(/^this is not a database/);
    l.close();
    // a directory without sidecars just gets a new ledger
    Ledger.open(dir()).close();
  });

  it('brings a schema-5 ledger forward to status "missing", keeping every row, count and trigger', () => {
    const d = dir();
    const db = new Database(path.join(d, 'ledger.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    for (const m of MIGRATIONS.slice(0, 5)) db.exec(m);
    db.pragma('user_version = 5');
    db.prepare(`INSERT INTO runs (job, trigger, status, started_at) VALUES ('backup', 'cli', 'ok', '2026-11-01T00:00:00Z')`).run();
    db.prepare(`INSERT INTO backups (run_id, kind, file, bytes, sha256, compression, profile, status, created_at) VALUES (1, 'daily', '/x/a.sql', 10, 'aa', 'none', 'full', 'ok', '2026-11-01T00:00:00Z')`).run();
    db.prepare(`INSERT INTO backup_tables (backup_id, table_name, rows) VALUES (1, 'public.t', 42)`).run();
    db.prepare(`INSERT INTO restore_drills (run_id, backup_id, started_at, ok) VALUES (1, 1, '2026-11-02T00:00:00Z', 1)`).run();
    const rev = db.prepare('SELECT rev FROM backups WHERE id = 1').pluck().get();
    db.close();
    const l = Ledger.open(d);
    expect(l.getBackup(1)).toMatchObject({ status: 'ok', file: '/x/a.sql' });
    expect(l.tableCounts(1)).toEqual({ 'public.t': 42 });
    expect(l.listDrills()).toHaveLength(1);
    expect(l.setIntegrity(1, 'missing')).toBe(true);
    expect(l.getBackup(1)!.status).toBe('missing');
    l.close();
    const after = new Database(path.join(d, 'ledger.db'), { readonly: true });
    expect(after.prepare('SELECT rev FROM backups WHERE id = 1').pluck().get()).toBeGreaterThan(rev as number); // the trigger still bumps it
    expect(after.pragma('foreign_key_check')).toEqual([]);
    after.close();
  });
});

describe('the ledger\'s statements', () => {
  it('are prepared once per connection, on first use, never again on later calls', () => {
    const l = Ledger.open(dir());
    const backup = {
      kind: 'daily' as const, description: null, bytes: 10, sha256: 'ab'.repeat(32), compression: 'none' as const, profile: 'full' as const, status: 'ok' as const,
      finishedAt: '2026-11-01T03:00:01.000Z', durationMs: 1000, database: 'app', source: null, sourceSystemId: null, serverVersion: '15.20', pgDumpVersion: '15.20',
      tables: { 'public.t': 3 }, error: null,
    };
    const storage = { complete: true, objects: 1, bytes: 5, files: 1, missing: 0, rowsWithoutFiles: 0, filesWithoutRows: 0, manifestFile: '/b/m.json', manifestSha256: 'ef'.repeat(32), summary: 'files complete', error: null };
    // every kind of call the ledger answers, each filter shape included
    const work = (round: number) => {
      const run = l.startRun('backup', 'cli', { kind: 'daily' });
      l.setRunFiles(run.id, { partialPath: `/b/${round}.partial` });
      l.mergeRunDetails(run.id, { round });
      const b = l.recordBackup({ ...backup, runId: run.id, file: `/b/${round}.sql`, createdAt: `2026-11-0${round}T03:00:00.000Z`, storage,
        evidence: { digests: { 'public.t': { crc32: 1, bytes: 2, columns: 'a' } }, session: null, fingerprint: null, roles: [], extensions: [], sequences: {} } });
      const rebuilt = l.addRebuiltBackup({ ...backup, file: `/b/${round}r.sql`, createdAt: `2026-10-0${round}T03:00:00.000Z` });
      const verify = l.startRun('verify', 'cli');
      l.finishRun(verify.id, 'ok', null, { checked: 1 });
      l.recordFailedRun('prune', 'schedule', '2026-11-01T00:00:00.000Z', { code: 'disk-full', message: 'no space' });
      l.flushPending();
      l.pendingRuns();
      l.getRun(run.id);
      l.listRuns();
      l.listRuns({ since: '2026-01-01', job: 'backup', limit: 5 });
      l.lastRun('backup');
      l.lastRun('backup', ['cli', 'schedule'], 'ok');
      l.firstRun('backup');
      l.newestScheduledBackupRun('2027-01-01');
      l.countRuns('backup', '2026-01-01');
      l.countRuns('backup', '2026-01-01', 'ok');
      l.recordStorageCapture(rebuilt.id, storage);
      l.storageCapture(b.id);
      l.backupByFile(b.file);
      l.hasBackupFile(b.file);
      l.getBackup(b.id);
      l.backupSource(b.id);
      l.latestBackup();
      l.latestBackup(['ok', 'corrupt']);
      l.listBackups();
      l.listBackups({ statuses: ['ok'], kind: 'daily', limit: 3 });
      l.listBackupsJson();
      l.listBackupsJson({ kind: 'daily' });
      l.listBackupsRaw({ statuses: ['ok', 'missing'], limit: 2 });
      l.countBackups();
      l.countBackups({ statuses: ['ok'] });
      l.evidence(b.id);
      l.tableCounts(b.id);
      l.setIntegrity(b.id, 'corrupt');
      l.setIntegrity(b.id, 'ok');
      l.markChecked(b.id);
      l.markVerified(b.id);
      l.setPinned(b.id, true);
      l.markPruned(rebuilt.id);
      l.setCopy(b.id, 'b2', { status: 'uploaded', key: 'k', location: 's3://x/k', bytes: 10, sha256: 'ab'.repeat(32), encrypted: true });
      l.setCopy(rebuilt.id, 'b2', { status: 'uploaded', key: 'r', location: 's3://x/r' });
      l.copy(b.id, 'b2');
      l.backupsToUpload('b2');
      l.copiesToDelete();
      l.copyStats();
      l.latestCopy('b2');
      l.recordDrill(run.id, '2026-11-01T04:00:00.000Z', { backupId: b.id, ok: true, tables: 1, rowsChecked: 3, durationMs: 5, mismatches: [], scratchDatabase: 'hb_drill', amcheck: 'off', fidelity: { objects: 0, tablesDigested: 0, differences: [] } });
      l.listDrills();
      l.scratchDatabasesToDrop();
      l.recordMonitor(null, { status: 'ok', checks: [], at: '2026-11-01T05:00:00.000Z' });
      l.listMonitors(2);
      l.recordSnapshot(null, '2026-11-01T06:00:00.000Z', null, { code: 'supabase-unreachable', message: 'timeout' });
      l.latestPoll();
      l.latestSnapshot();
      const ticket = l.queueForLock('backup', run.id, 'backup');
      expect(l.tryLock('backup', run.id, 'backup', ticket)).toBeNull();
      l.unlock('backup');
      l.leaveQueue(l.queueForLock('backup', null, 'prune'));
    };
    const prepare = vi.spyOn(Database.prototype, 'prepare');
    try {
      work(1);
      const first = prepare.mock.calls.map((c) => c[0]);
      expect(first.length).toBeGreaterThan(40);
      expect(new Set(first).size).toBe(first.length); // no text prepared twice
      prepare.mockClear();
      work(2);
      expect(prepare.mock.calls.map((c) => c[0])).toEqual([]);
    } finally {
      prepare.mockRestore();
    }
    // and the answers are the right ones
    expect(l.listBackups().map((b) => b.file)).toEqual(['/b/2.sql', '/b/1.sql', '/b/2r.sql', '/b/1r.sql']);
    expect(JSON.parse(l.listBackupsJson())).toEqual(l.listBackups());
    expect(l.copiesToDelete().map((c) => c.backup.file)).toEqual(['/b/1r.sql', '/b/2r.sql']);
    l.close();
  });
});
