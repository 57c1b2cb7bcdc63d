/** The report as Markdown: readable in a terminal, a ticket, or a chat. */
import { formatAge, formatBytes, formatCount, formatDuration, formatHours, formatTime, plural, printable } from '../util/format.js';
import { attention, drillFailure, filesCell, type ReportData } from './build.js';

const cell = (s: string) => (s === '' ? '-' : printable(s).replace(/\|/g, '\\|'));
const mdTable = (head: string[], rows: string[][]) => [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
/** How many backups the table lists (the newest). */
const BACKUP_ROWS = 60;

export function renderMarkdown(r: ReportData): string {
  const t = (iso: string | null | undefined) => formatTime(iso, r.timezone);
  const now = Date.parse(r.generatedAt);
  const out: string[] = [];
  out.push(`# hybrid-backup report — ${r.monitor.status.toUpperCase()}`, '');
  out.push(`${r.host}${r.database ? `, database \`${printable(r.database)}\`` : ', no database configured'} · generated ${t(r.generatedAt)} · window ${t(r.window.from)} → ${t(r.window.to)} (${plural(r.window.days, 'day')})`, '');
  if (r.database && r.backupDatabase && r.backupDatabase !== r.database) {
    out.push(`The newest backup is of database \`${printable(r.backupDatabase)}\`, not the configured \`${printable(r.database)}\`: DATABASE_URL changed since.`, '');
  }
  const { worst, others } = attention(r);
  const counted = r.monitor.checks.filter((c) => c.status !== 'off').length;
  if (worst.length) {
    out.push(...worst.map((c) => `- **${c.name}** (${c.status.toUpperCase()}): ${printable(c.message)}`));
    if (others.length) out.push(`- also: ${others.map((c) => `${c.name} (${c.status})`).join(', ')}; see Monitor`);
    out.push('');
  } else {
    out.push(`${counted === 1 ? 'The one check is' : `All ${formatCount(counted)} checks are`} OK.`, '');
  }

  out.push('## Recovery point', '');
  const s = r.sync;
  out.push(
    `- **Now**: ${s.recoveryPointHours === null ? 'no restore point in any layer' : `${formatHours(s.recoveryPointHours)} of writes would be lost restoring the newest point`} (sync-check: ${s.status.toUpperCase()})`,
    ...s.messages.map((m) => `  - ${printable(m)}`),
    `- **Local layer**: ${plural(s.local.count, 'ok backup')} in the window; newest ${s.local.latest ? `${t(s.local.latest)} (${formatAge(s.local.latest, now)})` : 'none'}`,
    `- **Supabase layer**: ${!s.supabase.configured ? 'not configured' : s.supabase.pitr?.enabled ? `PITR from ${t(s.supabase.pitr.earliest)} to ${t(s.supabase.pitr.latest)}` : `${plural(s.supabase.count, 'completed daily backup')}; newest ${s.supabase.latest ? `${t(s.supabase.latest)} (${formatAge(s.supabase.latest, now)})` : 'none'}`}`,
    `- **Gaps** (no layer could restore to for more than ${s.maxGapHours} h): ${s.gaps.length === 0 ? 'none' : s.gaps.map((g) => `${t(g.from)} → ${t(g.to)} (${g.hours} h)`).join('; ')}`,
    '',
  );

  out.push('## Monitor', '');
  out.push(mdTable(['check', 'status', 'message'], r.monitor.checks.map((c) => [c.name, c.status.toUpperCase(), c.message])), '');

  out.push('## Backups', '');
  const rate =
    r.successRate.rate === null
      ? 'no finished backup run'
      : `${Math.round(r.successRate.rate * 1000) / 10} % (${formatCount(r.successRate.ok)} of ${plural(r.successRate.total, 'backup run')} ok)`;
  out.push(`Success rate in the window: **${rate}**.`, '');
  out.push(
    mdTable(
      ['id', 'created', 'kind', 'status', 'size', 'drilled', 'offsite', 'files', 'description'],
      r.backups.slice(0, BACKUP_ROWS).map((b) => [String(b.id), t(b.createdAt), b.kind, b.status, b.status === 'ok' || b.status === 'corrupt' || b.status === 'missing' ? formatBytes(b.bytes) : '-', b.verifiedAt ? t(b.verifiedAt) : '-', b.offsite?.status ?? '-', filesCell(b), b.description ?? b.error?.message ?? '']),
    ),
    '',
  );
  if (r.backups.length > BACKUP_ROWS) out.push(`The newest ${formatCount(BACKUP_ROWS)} of ${plural(r.backups.length, 'backup')} in the window (hybrid-backup list shows them all).`, '');

  out.push('## Failures', '');
  out.push(r.failures.length === 0 ? 'None in the window.' : mdTable(['run', 'started', 'job', 'status', 'reason'], r.failures.map((f) => [String(f.id), t(f.startedAt), f.job, f.status, `${f.code ? `${f.code}: ` : ''}${f.message}`])), '');

  out.push('## Restore drills', '');
  out.push(
    r.drills.length === 0
      ? 'No restore drill yet: run npm run backup:restore-test (the service runs one weekly).'
      : mdTable(['started', 'backup', 'result', 'tables', 'rows checked', 'took'], r.drills.map((d) => [t(d.startedAt), String(d.backupId), d.ok ? 'passed' : `FAILED: ${drillFailure(d)}`, formatCount(d.tables), formatCount(d.rowsChecked), formatDuration(d.durationMs)])),
    '',
  );

  out.push('## Supabase settings against policy', '');
  const p = r.supabase.policy;
  out.push(`Policy ${p.met ? 'met' : '**NOT met**'}${p.projectRef ? ` for project \`${p.projectRef}\`` : ''}${r.supabase.snapshot ? ` (as of the poll ${formatAge(r.supabase.snapshot.takenAt, now)})` : ''}.`, '');
  out.push(mdTable(['item', 'status', 'detail', 'fix'], p.items.map((i) => [i.title, i.status === 'not-met' ? 'NOT MET' : i.status, i.detail, i.status === 'met' ? '' : (i.fix ?? '')])), '');
  return out.join('\n');
}
