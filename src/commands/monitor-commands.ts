/** `monitor`, `sync-check`, `report`: the hybrid view of both layers. */
import { lstat, open, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { HbError } from '../domain/errors.js';
import { type MonitorDoc, pluginExitCode } from '../domain/types.js';
import type { SyncDoc } from '../monitor/sync-check.js';
import type { ReportData } from '../report/build.js';
import { atomicWriteFile, ensurePrivateDir } from '../util/fs.js';
import { formatHours, formatTime, plural } from '../util/format.js';
import { defineCommand } from './command.js';

const LABEL = { ok: 'OK', warning: 'WARNING', critical: 'CRITICAL', unknown: 'UNKNOWN', off: 'off' } as const;

export const monitorCommand = defineCommand({
  name: 'monitor',
  worksOnFullDisk: true,
  summary: 'check both layers now, one check per concern; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (monitoring-plugin convention)',
  args: z.object({}),
  async run(ctx): Promise<MonitorDoc> {
    const { runMonitor } = await import('../monitor/monitor.js');
    return runMonitor(ctx);
  },
  render(doc, view) {
    const width = Math.max(...doc.checks.map((c) => c.name.length));
    return [
      `hybrid monitor: ${LABEL[doc.status]} (${formatTime(doc.at, view.timeZone)})`,
      ...doc.checks.map((c) => `  ${LABEL[c.status].padEnd(8)}  ${c.name.padEnd(width)}  ${c.message}`),
    ].join('\n');
  },
  exitCode: (doc) => pluginExitCode(doc.status),
  errorExitCode: 3,
});

export const syncCheckCommand = defineCommand({
  name: 'sync-check',
  worksOnFullDisk: true,
  summary: 'one timeline of both layers over the retention window: the gaps where no layer could restore to, and the recovery point; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN',
  args: z.object({}),
  async run(ctx): Promise<SyncDoc> {
    const { syncCheck } = await import('../monitor/sync-check.js');
    const poll = ctx.ledger.latestPoll();
    const snap = poll?.snapshot?.configured ? poll.snapshot : (ctx.ledger.latestSnapshot() ?? null);
    return syncCheck(ctx.config, ctx.ledger.listBackups(), snap, Date.now(), poll);
  },
  render(d, view) {
    const t = (iso: string | null) => (iso ? formatTime(iso, view.timeZone) : 'none');
    const lines = [
      `sync-check: ${LABEL[d.status]} — recovery point ${formatHours(d.recoveryPointHours)} (local ${formatHours(d.layers.local.hours)}, Supabase ${d.supabase.configured ? formatHours(d.layers.supabase.hours) : 'not configured'})`,
      `  window    ${t(d.window.from)} → ${t(d.window.to)} (${plural(d.window.days, 'day')})`,
      `  local     ${plural(d.local.count, 'ok backup')}, newest ${t(d.local.latest)}`,
      `  Supabase  ${!d.supabase.configured ? 'not configured (or never polled)' : d.supabase.pitr?.enabled ? `PITR ${t(d.supabase.pitr.earliest)} → ${t(d.supabase.pitr.latest)}` : `${plural(d.supabase.count, 'completed daily backup')}, newest ${t(d.supabase.latest)}`}`,
      '',
      dayGrid(d, view.timeZone),
      '',
      d.gaps.length ? `gaps longer than ${d.maxGapHours} h where neither layer can restore to:` : `no gaps longer than ${d.maxGapHours} h`,
      ...d.gaps.map((g) => `  ${t(g.from)} → ${t(g.to)}  (${g.hours} h)`),
      ...d.messages.map((m) => `note: ${m}`),
    ];
    return lines.join('\n');
  },
  exitCode: (d) => pluginExitCode(d.status),
  errorExitCode: 3,
});

/** One character per day: a restore point that day (■), the PITR range (━), nothing (·). */
function dayGrid(d: SyncDoc, tz: string): string {
  const DAY = 86_400_000;
  const from = Date.parse(d.window.from);
  const days = Math.ceil((Date.parse(d.window.to) - from) / DAY);
  const day = (iso: string) => Math.floor((Date.parse(iso) - from) / DAY);
  const lane = (points: string[], range?: { earliest: string | null; latest: string | null } | null) => {
    const cells = Array.from({ length: days }, () => '·');
    if (range?.earliest && range.latest) for (let i = Math.max(0, day(range.earliest)); i <= Math.min(days - 1, day(range.latest)); i++) cells[i] = '━';
    for (const p of points) if (day(p) >= 0 && day(p) < days) cells[day(p)] = '■';
    return cells.join('');
  };
  const label = new Intl.DateTimeFormat('en-GB', { timeZone: tz, month: 'short', day: 'numeric' });
  return [
    `            ${label.format(new Date(from))}${' '.repeat(Math.max(1, days - 12))}${label.format(new Date(d.window.to))}`,
    `  local     ${lane(d.local.points)}`,
    `  Supabase  ${lane(d.supabase.points, d.supabase.pitr?.enabled ? d.supabase.pitr : null)}`,
  ].join('\n');
}

export interface ReportDoc {
  format: 'md' | 'html' | 'json';
  file: string;
  report: ReportData;
  markdown?: string;
}

/** How each format's reports begin: only a file that begins so may be replaced by `--out`. */
const REPORT_START = /^(# hybrid-backup report|<!doctype html><html lang="en"><head><meta charset="utf-8">.*<title>hybrid-backup report|\{\s*"generatedAt")/s;

/**
 * `--out` may name any new file, or an earlier report, but nothing in the backup directory
 * except under reports/ (backups, sidecars, the ledger) and no other existing file: the
 * service may write it with more rights than the person asking.
 * @throws HbError `report-out-refused`
 */
async function checkReportOut(asked: string, backupDir: string): Promise<string> {
  // Judged where it really is: a link to the backup directory is the backup directory.
  const realDir = await realpath(path.dirname(asked)).catch(() => null);
  if (!realDir) throw new HbError('report-out-refused', `--out ${asked}: the folder ${path.dirname(asked)} does not exist`, 'create the folder first, or name another file');
  const file = path.join(realDir, path.basename(asked));
  const realBackupDir = await realpath(backupDir).catch(() => path.resolve(backupDir));
  const rel = path.relative(realBackupDir, file);
  const inside = rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
  if ((inside || rel === '') && !rel.startsWith(`reports${path.sep}`)) {
    throw new HbError('report-out-refused', `--out ${file} is inside the backup directory, where only reports/ takes reports`, `leave --out off (reports go to ${path.join(backupDir, 'reports')}), or name a file outside ${backupDir}`);
  }
  if (inside) await ensurePrivateDir(path.join(realBackupDir, 'reports'), { noLink: true });
  const info = await lstat(file).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return null;
    throw new HbError('report-out-refused', `--out ${file} cannot be checked: ${e.message}`, 'name a file this user may write');
  });
  if (!info) {
    const dir = await stat(path.dirname(file)).catch(() => null);
    if (!dir?.isDirectory()) throw new HbError('report-out-refused', `--out ${file}: the folder ${path.dirname(file)} does not exist`, 'create the folder first, or name another file');
    return file;
  }
  if (!info.isFile()) throw new HbError('report-out-refused', `--out ${file} is not a regular file`, 'name a file, e.g. report.html');
  const fh = await open(file, 'r');
  let head: string;
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    head = buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
  if (!REPORT_START.test(head)) {
    throw new HbError('report-out-refused', `--out ${file} exists and is not a hybrid-backup report; it was left alone`, 'name a new file, or remove that one first');
  }
  return file;
}

export const reportCommand = defineCommand({
  name: 'report',
  summary: 'a detailed report: Markdown (stdout and <backupDir>/reports/hybrid-report-<date>.md), JSON, or one self-contained HTML page',
  cli: {
    options: [
      { flags: '--format <format>', description: 'md, html or json', choices: ['md', 'html', 'json'], default: 'md' },
      { flags: '--out <file>', description: 'write the report here instead of <backupDir>/reports/' },
    ],
    // relative to where the command is typed, not to the service's directory
    toArgs: (_, o) => ({ format: o.format, out: o.out ? path.resolve(o.out as string) : undefined }),
  },
  args: z.object({ format: z.enum(['md', 'html', 'json']).default('md'), out: z.string().optional() }),
  async run(ctx, args): Promise<ReportDoc> {
    const { buildReport } = await import('../report/build.js');
    const { renderHtml } = await import('../report/html.js');
    const { renderMarkdown } = await import('../report/markdown.js');
    const report = await buildReport(ctx);
    const date = report.generatedAt.slice(0, 10);
    const asked = args.out ? path.resolve(args.out) : path.join(ctx.config.backupDir, 'reports', `hybrid-report-${date}.${args.format}`);
    const file = args.out ? await checkReportOut(asked, ctx.config.backupDir) : asked;
    if (!args.out) await ensurePrivateDir(path.dirname(file), { noLink: true });
    const text = args.format === 'md' ? renderMarkdown(report) : args.format === 'html' ? renderHtml(report) : `${JSON.stringify(report, null, 2)}\n`;
    await atomicWriteFile(file, text, 0o640);
    ctx.log.info(`report written to ${file}`);
    return { format: args.format, file, report, ...(args.format === 'md' ? { markdown: text } : {}) };
  },
  render(doc) {
    if (doc.format === 'md') return `${doc.markdown!.trimEnd()}\n\n(saved to ${doc.file})`;
    if (doc.format === 'json') return JSON.stringify(doc.report, null, 2);
    return `report written to ${doc.file}`;
  },
});
