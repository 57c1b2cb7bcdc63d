/**
 * The report's pages, rendered from fixed data (no database, no browser): what makes them
 * readable on a phone is in the document — tables that become one block per row under 600 px
 * with the long messages on a line of their own, check names that break only after a colon —
 * and the words say why: the "now" card gives the reasons when it is not OK, the header names
 * the configured database, the timeline of a first day spans that day.
 *
 * HB_REPORT_PAGES=<dir> keeps the three pages (empty ledger, one day, a month) for screenshots:
 * `HB_REPORT_PAGES=/tmp/pages npx vitest run test/report/render.test.ts`, then Chromium, as the
 * README's report section shows.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { chartRange, renderHtml, timeTicks, timelineSvg } from '../../src/report/html.js';
import { renderMarkdown } from '../../src/report/markdown.js';
import { DATABASE, NOW, OLD_DATABASE, SCENARIOS, scenario } from './scenarios.js';

const DAY = 86_400_000;
/** The CSS of the page's one <style> element, whitespace as written. */
const css = (html: string) => /<style>([\s\S]*?)<\/style>/.exec(html)![1]!;
/** The rules inside the `@media (max-width:600px)` block. */
const phoneRules = (html: string) => {
  const c = css(html);
  const at = c.indexOf('@media (max-width:600px){');
  expect(at, 'a narrow-screen @media block').toBeGreaterThan(-1);
  let depth = 0;
  for (let i = at; i < c.length; i++) {
    if (c[i] === '{') depth++;
    if (c[i] === '}' && --depth === 0) return c.slice(at, i + 1);
  }
  throw new Error('unterminated @media block');
};
/** The `<section>` whose heading starts with `title`. */
const section = (html: string, title: string) => {
  const m = new RegExp(`<section[^>]*><h2>${title}[\\s\\S]*?</section>`).exec(html);
  expect(m, `section ${title}`).not.toBeNull();
  return m![0];
};
const text = (html: string) => html.replace(/<[^>]+>/g, '').replace(/&gt;/g, '>').replace(/&lt;/g, '<').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');

describe('the HTML report on a phone', () => {
  it('keeps the pages for screenshots when HB_REPORT_PAGES is set', () => {
    const dir = process.env.HB_REPORT_PAGES;
    for (const name of SCENARIOS) {
      const html = renderHtml(scenario(name));
      expect(html).toMatch(/^<!doctype html>/);
      if (dir) {
        mkdirSync(dir, { recursive: true });
        writeFileSync(path.join(dir, `report-${name}.html`), html);
      }
    }
  });

  it.each(SCENARIOS)('%s: under 600 px every table is one block per row, headings hidden, nothing wider than the screen', (name) => {
    const html = renderHtml(scenario(name));
    expect(html).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
    const phone = phoneRules(html);
    expect(phone).toContain('table.stack thead{display:none}');
    expect(phone).toMatch(/table\.stack tr\{display:flex;flex-wrap:wrap/);
    expect(phone).toContain('table.stack td.full{flex-basis:100%}');
    expect(phone).toContain('table.stack td[data-label]::before{content:attr(data-label)');
    expect(phone).toContain('.chart.wide{display:none}');
    // long words (URLs, paths, bucket names) break rather than push the page sideways
    expect(css(html)).toContain('.msg{overflow-wrap:anywhere}');
    // every table stacks; no table is left to scroll sideways
    const tables = html.match(/<table[^>]*>/g) ?? [];
    expect(tables.length).toBeGreaterThan(0);
    for (const t of tables) expect(t).toMatch(/class="stack /);
  });

  it('the Monitor table: the message on its own line on a phone, breakable; check names break only after a colon', () => {
    const html = renderHtml(scenario('month'));
    const monitor = section(html, 'Monitor');
    const rows = monitor.match(/<tr>[\s\S]*?<\/tr>/g)!.slice(1);
    expect(rows).toHaveLength(scenario('month').monitor.checks.length);
    for (const row of rows) expect(row).toMatch(/<td class="full msg">[^<]+<\/td><\/tr>$/);
    expect(monitor).toContain('<span class="nw">offsite-copy:</span><wbr><span class="nw">s3-eu-backup-bucket-with-a-long-name</span>');
    expect(monitor).toContain('<span class="nw">local-backup-checksum</span>');
    expect(monitor).toMatch(/<th>check<\/th><th>status<\/th><th>message<\/th>/);
  });

  it('the Failures table: the reason on its own line on a phone, breakable, whole', () => {
    const r = scenario('month');
    const failures = section(renderHtml(r), 'Failures');
    const rows = failures.match(/<tr>[\s\S]*?<\/tr>/g)!.slice(1);
    expect(rows).toHaveLength(r.failures.length);
    for (const [i, row] of rows.entries()) {
      const f = r.failures[i]!;
      expect(row).toMatch(/<td class="full msg">[^<]+<\/td><\/tr>$/);
      expect(text(row)).toContain(`${f.code}: ${f.message}`);
    }
  });

  it('the "now" card says why it is not OK; the header names the worst checks and what they say', () => {
    const r = scenario('month');
    expect(r.sync.status).toBe('warning');
    const html = renderHtml(r);
    const now = /<div class="card now">[\s\S]*?<\/div>/.exec(html)![0];
    expect(now).toContain('WARNING');
    for (const m of r.sync.messages) expect(text(now)).toContain(m);
    expect(text(now)).toMatch(/2 gaps longer than 26 h where neither layer can restore to/);
    const header = /<header[\s\S]*?<\/header>/.exec(html)![0];
    expect(r.monitor.status).toBe('critical');
    expect(text(header)).toContain('hybrid-backup: CRITICAL');
    const drill = r.monitor.checks.find((c) => c.name === 'restore-drill')!;
    expect(text(header)).toContain(`restore-drill: ${drill.message}`);
    // an OK card has no list of reasons
    const ok = scenario('one-day');
    expect(ok.sync.status).toBe('ok');
    const okCard = /<div class="card now">[\s\S]*?<\/div>/.exec(renderHtml(ok))![0];
    expect(okCard).not.toContain('<ul>');
    // the empty ledger: critical, with its reason
    const empty = scenario('empty');
    const emptyCard = text(/<div class="card now">[\s\S]*?<\/div>/.exec(renderHtml(empty))![0]);
    expect(emptyCard).toContain('CRITICAL');
    expect(emptyCard).toContain('no layer has a restore point in the retention window');
  });

  it('the header names the configured database, and says so when the newest backup is of another', () => {
    const r = scenario('one-day');
    expect(r.database).toBe(DATABASE);
    const header = (x: typeof r) => text(/<header[\s\S]*?<\/header>/.exec(renderHtml(x))![0]);
    expect(header(r)).toContain(`database ${DATABASE}`);
    expect(header(r)).not.toContain(OLD_DATABASE);
    const changed = { ...r, backupDatabase: OLD_DATABASE };
    expect(header(changed)).toContain(`database ${DATABASE}`);
    expect(header(changed)).toContain(`The newest backup is of database ${OLD_DATABASE}, not the configured ${DATABASE}`);
    expect(header({ ...r, database: null })).toContain('no database configured');
  });

  it('one day of data: the timeline spans the day, the backups are not a dot at the edge', () => {
    const r = scenario('one-day');
    const { from, to, historyFrom } = chartRange(r);
    expect(to).toBe(NOW);
    expect(historyFrom).not.toBeNull();
    expect(to - from).toBeLessThanOrEqual(2 * DAY);
    const svg = timelineSvg(r, 1000);
    const xs = [...svg.matchAll(/<circle cx="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(xs).toHaveLength(2);
    // the two local backups, 5 h apart, are well apart and away from both edges
    expect(Math.abs(xs[0]! - xs[1]!)).toBeGreaterThan(100);
    for (const x of xs) expect(x).toBeGreaterThan(150);
    // hour ticks on a short span, local midnight as a date
    const ticks = timeTicks(from, to, 'Europe/Berlin', 8);
    expect(ticks.length).toBeGreaterThanOrEqual(4);
    expect(ticks.map((t) => t.label)).toContain('24 Nov');
    expect(ticks.some((t) => /^\d\d:00$/.test(t.label))).toBe(true);
    // and the page says the history is short
    expect(text(renderHtml(r))).toMatch(/The history starts with the first backup, 2026-11-23 16:03:00 CET/);
    // a month's history fills the window
    expect(chartRange(scenario('month')).historyFrom).toBeNull();
  });

  it('the empty ledger renders, with words instead of charts', () => {
    const html = renderHtml(scenario('empty'));
    expect(text(section(html, 'Backup sizes'))).toContain('no backups in the window');
    expect(text(html)).toContain('No restore drill yet');
    expect(text(html)).toContain('0 ok backups in the last 30 days');
  });

  it('times in the zone\'s name the README shows (CET), never an offset', () => {
    const html = renderHtml(scenario('month'));
    expect(html).toContain('2026-11-24 18:00:00 CET');
    expect(html).not.toMatch(/GMT[+-]\d/);
  });
});

describe('the Markdown report', () => {
  it('the Monitor table has a header for every column', () => {
    const md = renderMarkdown(scenario('month'));
    const monitor = md.split('\n## Monitor\n')[1]!.split('\n## ')[0]!.trim().split('\n');
    expect(monitor[0]).toBe('| check | status | message |');
    expect(monitor[1]).toBe('|---|---|---|');
    for (const line of md.split('\n').filter((l) => l.startsWith('| '))) expect(line).not.toMatch(/\|\s+\|\s*$/);
  });

  it('counts with their nouns: 1 completed daily backup, 2 ok backups, 2 gaps', () => {
    const md = renderMarkdown(scenario('one-day'));
    expect(md).toContain('- **Local layer**: 2 ok backups in the window');
    expect(md).toContain('- **Supabase layer**: 1 completed daily backup;');
    expect(md).not.toMatch(/(?<![\d.,])1 (backups|gaps|days|runs)\b/);
    expect(renderMarkdown(scenario('month'))).toContain('  - 2 gaps longer than 26 h where neither layer can restore to');
  });
});
