/**
 * The report: Markdown on stdout and in reports/, JSON, and the HTML page rendered in headless
 * Chromium — it loads with no console errors, its SVG charts are there and not empty, and a
 * screenshot is taken (HB_SCREENSHOT=<file> keeps a copy of the desktop one). On a phone no
 * table scrolls sideways: each row is one block. The failure in the history is listed with its
 * reason and counted in the success rate; no format shows a secret. (The README's screenshots are
 * of render.test.ts's pages, whose data is fixed.)
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFileName } from '../../src/dump/naming.js';
import { readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { FakeStorage, SERVICE_KEY } from '../helpers/fake-storage.js';
import { FakeManagementApi, REF, TOKEN } from '../helpers/fake-supabase.js';
import { ADMIN_URL, createDatabase, dropDatabase, psql } from '../helpers/pg.js';

const CHROMIUM = process.env.HB_CHROMIUM ?? '/usr/bin/chromium';
const DAY = 86_400_000;
/** Trust auth ignores it, but the program gets it in DATABASE_URL like a real one: it must never reach a report. */
const PASSWORD = 'rep0rt-Db-pw-7f3c91';
const withPassword = (url: string) => Object.assign(new URL(url), { password: PASSWORD }).toString();
const SECRETS = { 'the Management API access token': TOKEN, 'the service-role key': SERVICE_KEY, 'the database password': PASSWORD };
let db: { name: string; url: string };
let api: FakeManagementApi;
let storage: FakeStorage;
let dir: string;
let env: Record<string, string>;

/** A backup attempt of the month of history, as the service would have recorded it. */
interface Attempt {
  kind: 'daily' | 'pre-change';
  description: string | null;
  trigger: 'schedule' | 'cli';
  at: string;
  bytes: number;
  error: { code: string; message: string } | null;
}
let history: Attempt[];
/** Every backup run in the report's window: the history and the real manual backup. */
let expectedRate: { ok: number; failed: number; total: number };
const DUMP_FAILED = { code: 'dump-failed', message: 'pg_dump exited with code 1: pg_dump: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already' };

/**
 * A month of history: daily backups with a 4-day gap and one failure, pre-change backups, a
 * drill, Supabase's daily backups 12 h apart from them, and an offsite copy of the newest. Runs
 * with every secret configured: the access token, the service-role key, a database password.
 */
beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`the report test renders HTML in Chromium and found none at ${CHROMIUM}: apt-get install chromium (or set HB_CHROMIUM)`);
  db = await createDatabase('rep');
  await psql(db.url, `create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 2000) g;`);
  api = await new FakeManagementApi().start();
  storage = await new FakeStorage().start();
  const now = Date.now();
  api.state.backups = Array.from({ length: 7 }, (_, i) => ({ id: 300 + i, status: 'COMPLETED', inserted_at: new Date(now - (i * 24 + 9) * 3_600_000).toISOString(), is_physical_backup: false }));
  dir = tempDir('hbrep');
  // integritySamples 0: the month of history is made of ledger rows and files of the right size, not real dumps
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ timezone: 'Europe/Berlin', supabase: { requestTimeoutSeconds: 2 }, monitor: { integritySamples: 0 }, offsite: { prefix: `${path.basename(dir)}/` } }));
  env = {
    DATABASE_URL: withPassword(db.url),
    BACKUP_DIR: path.join(dir, 'b'),
    HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'),
    RESTORE_TEST_DATABASE_URL: withPassword(ADMIN_URL),
    SUPABASE_API_URL: api.url,
    SUPABASE_PROJECT_REF: REF,
    SUPABASE_ACCESS_TOKEN: TOKEN,
    SUPABASE_URL: storage.url,
    SUPABASE_SERVICE_ROLE_KEY: SERVICE_KEY,
  };
  // the ledger first: the month of history comes before the real backup taken now
  expect((await runCli(['runs'], env)).exitCode).toBe(0);
  history = [];
  for (let d = 29; d >= 1; d--) {
    if (d >= 18 && d <= 21) continue; // the gap: the server was down
    const at = new Date(now - d * DAY - 3 * 3_600_000).toISOString();
    const bytes = Math.round(78_000 * (0.8 + (29 - d) / 140)); // growing to about the size of the real backup
    history.push({ kind: 'daily', description: null, trigger: 'schedule', at, bytes, error: d === 10 ? DUMP_FAILED : null });
    if (d % 9 === 0) history.push({ kind: 'pre-change', description: `release ${d}`, trigger: 'cli', at: new Date(Date.parse(at) + 8 * 3_600_000).toISOString(), bytes, error: null });
  }
  // Each attempt as take-backup records it: a `backup` run, the backup row pointing at it and
  // the run at the backup; a failed attempt has no file, and its error in both. The ok ones were
  // copied offsite when they were taken.
  const l = new Database(path.join(env.BACKUP_DIR!, 'ledger.db'));
  const insertRun = l.prepare(
    `insert into runs (job, trigger, status, started_at, finished_at, pid, host, error_code, error_message, final_path, details) values ('backup', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertBackup = l.prepare(
    `insert into backups (run_id, kind, description, file, bytes, sha256, compression, profile, status, created_at, finished_at, duration_ms, database, error_code, error_message, offsite_status, offsite_path, offsite_bytes, offsite_at)
     values (?, ?, ?, ?, ?, ?, 'none', 'supabase', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const linkRun = l.prepare('update runs set backup_id = ? where id = ?');
  l.transaction(() => {
    for (const a of history) {
      const file = path.join(env.BACKUP_DIR!, backupFileName(a.at, a.kind, a.description, 'none'));
      const status = a.error ? 'failed' : 'ok';
      const started = new Date(Date.parse(a.at) - 2_000).toISOString();
      const durationMs = a.error ? 900 : 4_000;
      const finished = new Date(Date.parse(a.at) + durationMs).toISOString();
      const details = JSON.stringify({ kind: a.kind, description: a.description, compression: 'none', profile: 'supabase', file });
      const runId = Number(insertRun.run(a.trigger, status, started, finished, process.pid, os.hostname(), a.error?.code ?? null, a.error?.message ?? null, file, details).lastInsertRowid);
      // every ok backup's file exists with its size: prune and the monitor look at the disk
      const content = Buffer.alloc(a.error ? 0 : a.bytes, `-- backup taken at ${a.at}\n`);
      if (!a.error) writeFileSync(file, content);
      const sha256 = a.error ? null : createHash('sha256').update(content).digest('hex');
      const offsite = a.error ? [null, null, null, null] : ['uploaded', `hybrid-backups/${path.basename(dir)}/${path.basename(file)}`, a.bytes, finished];
      const backupId = Number(insertBackup.run(runId, a.kind, a.description, file, a.error ? 0 : a.bytes, sha256, status, a.at, finished, durationMs, db.name, a.error?.code ?? null, a.error?.message ?? null, ...offsite).lastInsertRowid);
      linkRun.run(backupId, runId);
    }
  })();
  l.close();
  const failed = history.filter((a) => a.error).length;
  expect(failed).toBe(1);
  expectedRate = { ok: history.length - failed + 1, failed, total: history.length + 1 }; // + the manual backup
  const manual = await runCli(['manual', '--json'], env);
  expect(manual.exitCode, manual.stderr).toBe(0);
  expect(JSON.parse(manual.stdout).offsite).toMatchObject({ status: 'uploaded' });
  for (const cmd of [['restore-test'], ['supabase-status'], ['prune']]) {
    const r = await runCli(cmd, env);
    expect(r.exitCode, `${cmd.join(' ')}: ${r.stderr}`).toBe(0);
  }
});
afterAll(async () => {
  await api?.stop();
  await storage?.stop();
  if (db) await dropDatabase(db.name);
  if (dir) removeDir(dir);
});

/** The lines of one `## ` section of the Markdown report. */
const mdSection = (md: string, title: string) => md.split(`\n## ${title}\n`)[1]!.split('\n## ')[0]!.trim();
const percent = (r: { ok: number; total: number }) => `${Math.round((r.ok / r.total) * 1000) / 10} %`;

describe('report', () => {
  it('Markdown: to stdout and to reports/hybrid-report-<date>.md', async () => {
    const r = await runCli(['report'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^# hybrid-backup report — (OK|WARNING|CRITICAL|UNKNOWN)/);
    for (const h of ['## Recovery point', '## Monitor', '## Backups', '## Failures', '## Restore drills', '## Supabase settings against policy']) expect(r.stdout).toContain(h);
    expect(r.stdout).toMatch(/- \*\*Gaps\*\* \(no layer could restore to for more than 26 h\): .*\(\d+(\.\d)? h\)/);
    expect(r.stdout).toContain(`Success rate in the window: **${percent(expectedRate)} (${expectedRate.ok} of ${expectedRate.total} backup runs ok)**.`);
    // the failed scheduled backup, with its reason, is the one failure
    const failures = mdSection(r.stdout, 'Failures').split('\n').slice(2);
    const failed = history.find((a) => a.error)!;
    expect(failures).toHaveLength(1);
    const [run, ...more] = readLedger(env.BACKUP_DIR!, `select r.id, r.job, r.status from runs r join backups b on b.run_id = r.id where b.created_at = ?`, failed.at);
    expect([run, ...more]).toEqual([{ id: expect.any(Number), job: 'backup', status: 'failed' }]);
    expect(failures[0]).toMatch(new RegExp(`^\\| ${run.id} \\| \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d(:\\d\\d)? [^|]*\\| backup \\| failed \\| `));
    expect(failures[0]).toContain(`| dump-failed: ${DUMP_FAILED.message} |`);
    // and it is the failed backup listed under Backups
    expect(mdSection(r.stdout, 'Backups')).toMatch(new RegExp(`\\| daily \\| failed \\| - \\| - \\| - \\| - \\| ${DUMP_FAILED.message.slice(0, 30)}`));
    const date = new Date().toISOString().slice(0, 10);
    const file = path.join(env.BACKUP_DIR!, 'reports', `hybrid-report-${date}.md`);
    expect(r.stdout).toMatch(new RegExp(`\\n\\n\\(saved to ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)$`));
    expect(readFileSync(file, 'utf8').trimEnd()).toBe(r.stdout.replace(/\n\n\(saved to .*\)$/, ''));
  });

  it('--out replaces an earlier report but never a backup, the ledger or another file; a missing folder is named', async () => {
    const b = path.join(dir, 'b');
    const backup = readdirSync(b).find((f) => f.endsWith('.sql'))!;
    const refused = [
      [path.join(b, backup), /inside the backup directory/],
      [path.join(b, 'ledger.db'), /inside the backup directory/],
      [path.join(b, 'new.md'), /inside the backup directory/],
      [path.join(dir, 'c.json'), /exists and is not a hybrid-backup report/],
      [path.join(dir, 'no', 'such', 'r.md'), /the folder .* does not exist/],
      [dir, /inside the backup directory|is not a regular file/],
    ] as const;
    for (const [out, msg] of refused) {
      const before = existsSync(out) && statSync(out).isFile() ? readFileSync(out) : null;
      const r = await runCli(['report', '--out', out], env);
      expect(r.exitCode, `${out}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(msg);
      if (before && !out.endsWith('ledger.db')) expect(readFileSync(out)).toEqual(before); // the ledger records runs
    }
    // an earlier report of any format, in reports/ or outside, is replaced
    for (const format of ['md', 'json', 'html']) {
      const out = path.join(dir, `again.${format}`);
      expect((await runCli(['report', '--format', format, '--out', out], env)).exitCode).toBe(0);
      const r = await runCli(['report', '--format', format, '--out', out], env);
      expect(r.exitCode, r.stderr).toBe(0);
    }
    const inReports = path.join(b, 'reports', 'custom.md');
    expect((await runCli(['report', '--out', inReports], env)).exitCode).toBe(0);
    expect(readFileSync(inReports, 'utf8')).toMatch(/^# hybrid-backup report/);
  });

  it('JSON: the same data, one document', async () => {
    const r = await runCli(['report', '--format', 'json'], env);
    expect(r.exitCode).toBe(0);
    const d = JSON.parse(r.stdout);
    expect(d).toMatchObject({ timezone: 'Europe/Berlin', monitor: { status: expect.any(String) }, sync: { gaps: expect.any(Array) } });
    expect(d.successRate).toEqual({ ...expectedRate, rate: expectedRate.ok / expectedRate.total });
    const failed = history.find((a) => a.error)!;
    expect(d.failures).toEqual([{ id: expect.any(Number), job: 'backup', trigger: 'schedule', status: 'failed', startedAt: expect.any(String), code: DUMP_FAILED.code, message: DUMP_FAILED.message }]);
    expect(Date.parse(d.failures[0].startedAt)).toBeLessThanOrEqual(Date.parse(failed.at));
    expect(d.backups.filter((b: { status: string }) => b.status === 'failed')).toEqual([expect.objectContaining({ createdAt: failed.at, runId: d.failures[0].id, error: DUMP_FAILED })]);
    expect(d.sync.gaps.length).toBeGreaterThan(0);
    expect(d.drills.length).toBe(1);
    expect(d.supabase.policy.items.length).toBeGreaterThan(0);
    const wrapped = JSON.parse((await runCli(['report', '--format', 'json', '--json'], env)).stdout);
    expect(wrapped).toMatchObject({ format: 'json', file: expect.stringMatching(/hybrid-report-\d{4}-\d\d-\d\d\.json$/), report: { sync: expect.any(Object) } });
  });

  it('HTML: one self-contained page that renders in Chromium with its charts, on a desktop and a phone', async () => {
    const out = path.join(dir, 'report.html');
    const r = await runCli(['report', '--format', 'html', '--out', out], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`report written to ${out}`);
    const html = readFileSync(out, 'utf8');
    expect(html).not.toMatch(/<script|<link |@import|url\(|https?:\/\/(?!www\.w3\.org)/i); // nothing external, no scripts
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      for (const [width, name] of [[1100, 'desktop'], [390, 'phone']] as const) {
        const page = await browser.newPage({ viewport: { width, height: 900 } });
        const errors: string[] = [];
        const requests: string[] = [];
        page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
        page.on('pageerror', (e) => errors.push(e.message));
        page.on('request', (q) => requests.push(q.url()));
        await page.goto(`file://${out}`);
        expect(errors, name).toEqual([]);
        expect(requests.filter((u) => !u.startsWith('file://')), name).toEqual([]);
        // the visible charts: a timeline with backups of both layers and the gap, and the sizes
        const charts = await page.$$eval('svg.chart', (svgs) =>
          svgs
            .filter((s) => s.getBoundingClientRect().width > 0)
            .map((s) => ({ cls: s.getAttribute('class'), width: s.getBoundingClientRect().width, circles: s.querySelectorAll('circle').length, rects: s.querySelectorAll('rect').length, gaps: s.querySelectorAll('rect.gap').length, managed: s.querySelectorAll('rect.managed').length, failed: s.querySelectorAll('path.failed').length })),
        );
        expect(charts.map((c) => c.cls), name).toEqual([`chart timeline ${name === 'phone' ? 'narrow' : 'wide'}`, `chart sizes ${name === 'phone' ? 'narrow' : 'wide'}`]);
        const [timeline, sizes] = charts;
        expect(timeline!.width).toBeGreaterThan(width * 0.7);
        expect(timeline!.circles).toBeGreaterThan(20);
        expect(timeline!.managed).toBe(7);
        expect(timeline!.gaps).toBeGreaterThan(0);
        expect(sizes!.rects).toBeGreaterThan(20);
        // the failed backup: crossed out on the timeline, listed with its reason, counted in the success rate
        expect(timeline!.failed, name).toBe(expectedRate.failed);
        const failures = page.locator('section', { has: page.locator('h2', { hasText: /^Failures$/ }) });
        expect(await failures.locator('tbody tr').count(), name).toBe(1);
        expect(await failures.locator('tbody tr').textContent(), name).toContain(`backupfailed${DUMP_FAILED.code}: ${DUMP_FAILED.message}`);
        const rate = await page.locator('.card', { hasText: 'backup success rate' }).textContent();
        expect(rate, name).toBe(`backup success rate${percent(expectedRate)}${expectedRate.ok} of ${expectedRate.total} runs`);
        // nothing wider than the screen, and no table that must be scrolled sideways to be read
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        expect(overflow, name).toBeLessThanOrEqual(0);
        const scrolled = await page.$$eval('.scroll', (els) => els.filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => e.querySelector('table')?.className));
        expect(scrolled, name).toEqual([]);
        if (name === 'phone') {
          // the Monitor table is one block per check, its message shown whole below the name
          const heads = await page.$$eval('#monitor thead', (els) => els.map((e) => getComputedStyle(e).display));
          expect(heads, name).toEqual(['none']);
          const messages = await page.$$eval('#monitor td.msg', (tds) => tds.map((td) => ({ clipped: td.scrollWidth > td.clientWidth + 1, width: td.getBoundingClientRect().width })));
          expect(messages.length).toBeGreaterThan(5);
          for (const m of messages) expect(m, name).toMatchObject({ clipped: false });
          expect(Math.min(...messages.map((m) => m.width)), name).toBeGreaterThan(width * 0.7);
        }
        const shot = path.join(dir, `report-${name}.png`);
        await page.screenshot({ path: shot, fullPage: name === 'desktop' });
        expect(statSync(shot).size).toBeGreaterThan(10_000);
        if (process.env.HB_SCREENSHOT && name === 'desktop') copyFileSync(shot, process.env.HB_SCREENSHOT);
      }
    } finally {
      await browser.close();
    }
  });

  it('no secret in any report, in any format: the access token, the service-role key, the database password', async () => {
    // the secrets were in use: the API and Storage saw them, the database was reached through the URL with the password
    expect(api.requests.length).toBeGreaterThan(0);
    expect(api.requests.every((q) => q.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(storage.requests.length).toBeGreaterThan(0);
    expect(storage.requests.every((q) => q.authorized)).toBe(true);
    expect(env.DATABASE_URL).toContain(`:${PASSWORD}@`);
    const texts: Array<[string, string]> = [];
    for (const format of ['md', 'json', 'html']) {
      for (const args of [['report', '--format', format], ['report', '--format', format, '--json'], ['report', '--format', format, '--out', path.join(dir, `secrets.${format}`)]]) {
        const r = await runCli(args, env);
        expect(r.exitCode, r.stderr).toBe(0);
        texts.push([`${args.join(' ')}: stdout`, r.stdout], [`${args.join(' ')}: stderr`, r.stderr]);
      }
      texts.push([`secrets.${format}`, readFileSync(path.join(dir, `secrets.${format}`), 'utf8')]);
    }
    const reports = path.join(env.BACKUP_DIR!, 'reports');
    for (const f of readdirSync(reports)) texts.push([f, readFileSync(path.join(reports, f), 'utf8')]);
    expect(texts.map(([what]) => what)).toEqual(expect.arrayContaining(['hybrid-report-' + new Date().toISOString().slice(0, 10) + '.html', 'secrets.json']));
    for (const [what, text] of texts) {
      for (const [name, secret] of Object.entries(SECRETS)) {
        expect(text.includes(secret) || text.includes(encodeURIComponent(secret)), `${name} in ${what}`).toBe(false);
      }
    }
    // what the reports do show of the same settings
    const json = readFileSync(path.join(dir, 'secrets.json'), 'utf8');
    expect(JSON.parse(json)).toMatchObject({ database: db.name, supabase: { snapshot: { projectRef: REF } } });
  });
});
