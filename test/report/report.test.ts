/**
 * The report: Markdown on stdout and in reports/, JSON, and the HTML page rendered in headless
 * Chromium — it loads with no console errors, its SVG charts are there and not empty, and a
 * screenshot is taken (HB_SCREENSHOT=<file> keeps a copy, for the README).
 */
import { copyFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeDir, runCli, tempDir } from '../helpers/cli.js';
import { FakeManagementApi, REF, TOKEN } from '../helpers/fake-supabase.js';
import { ADMIN_URL, createDatabase, dropDatabase, psql } from '../helpers/pg.js';

const CHROMIUM = process.env.HB_CHROMIUM ?? '/usr/bin/chromium';
const DAY = 86_400_000;
let db: { name: string; url: string };
let api: FakeManagementApi;
let dir: string;
let env: Record<string, string>;

/** A month of history: daily backups with a 4-day gap, a failure, pre-change backups, drills, and Supabase's daily backups 12 h apart from them. */
beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`the report test renders HTML in Chromium and found none at ${CHROMIUM}: apt-get install chromium (or set HB_CHROMIUM)`);
  db = await createDatabase('rep');
  await psql(db.url, `create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 2000) g;`);
  api = await new FakeManagementApi().start();
  const now = Date.now();
  api.state.backups = Array.from({ length: 7 }, (_, i) => ({ id: 300 + i, status: 'COMPLETED', inserted_at: new Date(now - (i * 24 + 9) * 3_600_000).toISOString(), is_physical_backup: false }));
  dir = tempDir('hbrep');
  // integritySamples 0: the month of history is made of ledger rows; only the newest backup has a real file
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ timezone: 'Europe/Berlin', supabase: { requestTimeoutSeconds: 2 }, monitor: { integritySamples: 0 } }));
  env = { DATABASE_URL: db.url, BACKUP_DIR: path.join(dir, 'b'), HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'), RESTORE_TEST_DATABASE_URL: ADMIN_URL, SUPABASE_API_URL: api.url, SUPABASE_PROJECT_REF: REF, SUPABASE_ACCESS_TOKEN: TOKEN };
  const first = JSON.parse((await runCli(['manual', '--json'], env)).stdout);
  const l = new Database(path.join(env.BACKUP_DIR!, 'ledger.db'));
  const row = l.prepare('select * from backups where id = ?').get(first.id) as Record<string, unknown>;
  const insert = l.prepare(`insert into backups (kind, description, file, bytes, sha256, compression, profile, status, created_at, database) values (?, ?, ?, ?, ?, 'none', 'supabase', ?, ?, ?)`);
  for (let d = 29; d >= 1; d--) {
    if (d >= 18 && d <= 21) continue; // the gap: the server was down
    const at = new Date(now - d * DAY - 3 * 3_600_000).toISOString();
    const bytes = Math.round(Number(row.bytes) * (0.8 + (29 - d) / 60));
    insert.run('daily', null, `${row.file}.${d}`, bytes, row.sha256, d === 10 ? 'failed' : 'ok', at, row.database);
    if (d % 9 === 0) insert.run('pre-change', `release ${d}`, `${row.file}.pc${d}`, bytes, row.sha256, 'ok', new Date(Date.parse(at) + 8 * 3_600_000).toISOString(), row.database);
  }
  l.close();
  for (const cmd of [['restore-test'], ['supabase-status'], ['prune', '--dry-run']]) await runCli(cmd, env);
});
afterAll(async () => {
  await api?.stop();
  if (db) await dropDatabase(db.name);
  if (dir) removeDir(dir);
});

describe('report', () => {
  it('Markdown: to stdout and to reports/hybrid-report-<date>.md', async () => {
    const r = await runCli(['report'], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^# hybrid-backup report — (OK|WARNING|CRITICAL|UNKNOWN)/);
    for (const h of ['## Recovery point', '## Monitor', '## Backups', '## Failures', '## Restore drills', '## Supabase settings against policy']) expect(r.stdout).toContain(h);
    expect(r.stdout).toMatch(/- \*\*Gaps\*\* \(no layer could restore to for more than 26 h\): .*\(\d+(\.\d)? h\)/);
    expect(r.stdout).toMatch(/Success rate in the window: \*\*\d+(\.\d)? % \(\d+ of \d+ backup runs ok\)\*\*/);
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
    expect(d).toMatchObject({ timezone: 'Europe/Berlin', monitor: { status: expect.any(String) }, sync: { gaps: expect.any(Array) }, successRate: { total: expect.any(Number) } });
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
            .map((s) => ({ cls: s.getAttribute('class'), width: s.getBoundingClientRect().width, circles: s.querySelectorAll('circle').length, rects: s.querySelectorAll('rect').length, gaps: s.querySelectorAll('rect.gap').length, managed: s.querySelectorAll('rect.managed').length })),
        );
        expect(charts.map((c) => c.cls), name).toEqual([`chart timeline ${name === 'phone' ? 'narrow' : 'wide'}`, `chart sizes ${name === 'phone' ? 'narrow' : 'wide'}`]);
        const [timeline, sizes] = charts;
        expect(timeline!.width).toBeGreaterThan(width * 0.7);
        expect(timeline!.circles).toBeGreaterThan(20);
        expect(timeline!.managed).toBe(7);
        expect(timeline!.gaps).toBeGreaterThan(0);
        expect(sizes!.rects).toBeGreaterThan(20);
        // nothing wider than the screen but the scrolling tables
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        expect(overflow, name).toBeLessThanOrEqual(0);
        const shot = path.join(dir, `report-${name}.png`);
        await page.screenshot({ path: shot, fullPage: name === 'desktop' });
        expect(statSync(shot).size).toBeGreaterThan(10_000);
        if (process.env.HB_SCREENSHOT && name === 'desktop') copyFileSync(shot, process.env.HB_SCREENSHOT);
      }
    } finally {
      await browser.close();
    }
  });
});
