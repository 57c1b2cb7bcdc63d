/**
 * The report as one self-contained HTML page: no scripts, no external styles or fonts, inline SVG
 * charts (a timeline of both layers, backup sizes over time). Readable on a phone: fluid width,
 * charts that scale, tables that scroll sideways.
 */
import { formatAge, formatBytes, formatCount, formatDuration, formatTime, printable } from '../util/format.js';
import type { ReportData } from './build.js';

const esc = (s: unknown) => printable(String(s)).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const DAY = 86_400_000;
const KIND_COLOR = { daily: '#2563eb', manual: '#16a34a', 'pre-change': '#ea580c' } as const;
const STATUS_CLASS: Record<string, string> = { ok: 'ok', met: 'ok', warning: 'warn', 'not-met': 'crit', critical: 'crit', unknown: 'unk', off: 'off', advice: 'off' };

function timeAxis(from: number, to: number, x: (t: number) => number, y1: number, y2: number, tz: string, narrow = false): string {
  const days = (to - from) / DAY;
  const step = (days > 60 ? 14 : days > 20 ? 7 : days > 6 ? 2 : 1) * (narrow ? 2 : 1);
  const parts: string[] = [];
  const fmt = new Intl.DateTimeFormat('en-GB', { timeZone: tz, month: 'short', day: 'numeric' });
  for (let t = from; t <= to; t += step * DAY) {
    const xx = x(t).toFixed(1);
    parts.push(`<line x1="${xx}" y1="${y1}" x2="${xx}" y2="${y2}" class="grid"/>`, `<text x="${xx}" y="${y2 + 14}" class="tick" text-anchor="middle">${esc(fmt.format(new Date(t)))}</text>`);
  }
  return parts.join('');
}

/**
 * Both layers on one time axis: local backups, managed backups, the PITR range, the gaps.
 * `W` is the drawing's width: 1000 for screens, 480 for phones (so its text stays legible).
 */
export function timelineSvg(r: ReportData, W = 1000): string {
  const narrow = W < 600;
  const L = narrow ? 70 : 92;
  const R = 16;
  const from = Date.parse(r.window.from);
  const to = Date.parse(r.window.to);
  const x = (t: number) => L + ((Math.min(Math.max(t, from), to) - from) / Math.max(1, to - from)) * (W - L - R);
  const laneLocal = 40;
  const laneManaged = 100;
  const parts: string[] = [`<svg class="chart timeline ${narrow ? 'narrow' : 'wide'}" viewBox="0 0 ${W} 170" role="img" aria-label="Timeline of restore points in both layers" xmlns="http://www.w3.org/2000/svg">`];
  parts.push(timeAxis(from, to, x, 16, 130, r.timezone, narrow));
  for (const g of r.sync.gaps) {
    parts.push(`<rect class="gap" x="${x(Date.parse(g.from)).toFixed(1)}" y="16" width="${Math.max(2, x(Date.parse(g.to)) - x(Date.parse(g.from))).toFixed(1)}" height="114"><title>gap: ${esc(g.hours)} h without a restore point</title></rect>`);
  }
  parts.push(`<text x="8" y="${laneLocal + 4}" class="lane">local</text><line x1="${L}" y1="${laneLocal}" x2="${W - R}" y2="${laneLocal}" class="lane-line"/>`);
  parts.push(`<text x="8" y="${laneManaged + 4}" class="lane">Supabase</text><line x1="${L}" y1="${laneManaged}" x2="${W - R}" y2="${laneManaged}" class="lane-line"/>`);
  const pitr = r.sync.supabase.pitr;
  if (pitr?.enabled && pitr.earliest && pitr.latest) {
    const a = x(Date.parse(pitr.earliest));
    parts.push(`<rect class="pitr" x="${a.toFixed(1)}" y="${laneManaged - 9}" width="${Math.max(2, x(Date.parse(pitr.latest)) - a).toFixed(1)}" height="18" rx="4"><title>PITR window ${esc(pitr.earliest)} → ${esc(pitr.latest)}</title></rect>`);
  }
  for (const b of r.backups.filter((b) => b.status === 'ok' || b.status === 'pruned')) {
    parts.push(`<circle cx="${x(Date.parse(b.createdAt)).toFixed(1)}" cy="${laneLocal}" r="6" fill="${KIND_COLOR[b.kind]}"><title>backup ${b.id} (${esc(b.kind)}) ${esc(b.createdAt)}</title></circle>`);
  }
  for (const b of r.backups.filter((b) => b.status === 'failed' || b.status === 'interrupted')) {
    parts.push(`<path class="failed" d="M${(x(Date.parse(b.createdAt)) - 5).toFixed(1)} ${laneLocal - 5} l10 10 m0 -10 l-10 10"><title>failed backup ${b.id} ${esc(b.createdAt)}</title></path>`);
  }
  for (const t of r.sync.supabase.points) {
    parts.push(`<rect class="managed" x="${(x(Date.parse(t)) - 5).toFixed(1)}" y="${laneManaged - 5}" width="10" height="10"><title>managed backup ${esc(t)}</title></rect>`);
  }
  parts.push(`<line x1="${x(to).toFixed(1)}" y1="12" x2="${x(to).toFixed(1)}" y2="130" class="now"/>`);
  parts.push('</svg>');
  return parts.join('');
}

/** Sizes of the ok backups over time, one bar each (`W` as for the timeline). */
export function sizesSvg(r: ReportData, W = 1000): string {
  const narrow = W < 600;
  const H = narrow ? 200 : 220;
  const L = 70;
  const B = 30;
  const parts: string[] = [`<svg class="chart sizes ${narrow ? 'narrow' : 'wide'}" viewBox="0 0 ${W} ${H}" role="img" aria-label="Backup sizes over time" xmlns="http://www.w3.org/2000/svg">`];
  if (r.sizes.length === 0) {
    parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="tick">no backups in the window</text></svg>`);
    return parts.join('');
  }
  const from = Date.parse(r.window.from);
  const to = Date.parse(r.window.to);
  const max = Math.max(...r.sizes.map((s) => s.bytes), 1);
  const x = (t: number) => L + ((t - from) / Math.max(1, to - from)) * (W - L - 16);
  const y = (b: number) => H - B - (b / max) * (H - B - 16);
  parts.push(timeAxis(from, to, x, 16, H - B, r.timezone, narrow));
  parts.push(`<text x="${L - 6}" y="20" text-anchor="end" class="tick">${esc(formatBytes(max))}</text><text x="${L - 6}" y="${H - B}" text-anchor="end" class="tick">0</text>`);
  const w = Math.max(2, Math.min(18, ((W - L) / Math.max(r.sizes.length, 1)) * 0.6));
  for (const s of r.sizes) {
    const xx = x(Date.parse(s.at)) - w / 2;
    parts.push(`<rect x="${xx.toFixed(1)}" y="${y(s.bytes).toFixed(1)}" width="${w.toFixed(1)}" height="${(H - B - y(s.bytes)).toFixed(1)}" fill="${KIND_COLOR[s.kind]}"><title>backup ${s.id}: ${esc(formatBytes(s.bytes))}</title></rect>`);
  }
  parts.push('</svg>');
  return parts.join('');
}

const nw = (s: string) => `<span class="nw">${esc(s)}</span>`;
const badge = (status: string, label = status) => `<span class="badge ${STATUS_CLASS[status] ?? 'unk'}">${esc(label)}</span>`;
const table = (head: string[], rows: string[][]) =>
  `<div class="scroll"><table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('')}</tbody></table></div>`;

const CSS = `
:root{color-scheme:light;--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--ok:#16a34a;--warn:#d97706;--crit:#dc2626;--unk:#7c3aed}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:#f9fafb}
main{max-width:1040px;margin:0 auto;padding:16px}header{padding:16px;border-radius:10px;color:#fff;margin-bottom:16px}
header.ok{background:var(--ok)}header.warning{background:var(--warn)}header.critical{background:var(--crit)}header.unknown{background:var(--unk)}
header h1{margin:0 0 4px;font-size:22px}header p{margin:0;opacity:.95}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin-bottom:16px}
h2{font-size:17px;margin:0 0 10px}.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px}.card b{display:block;font-size:20px}.card span{color:var(--muted);font-size:13px}.card .badge{color:#fff}
.chart{width:100%;height:auto;display:block}.grid{stroke:var(--line)}.tick{font-size:12px;fill:var(--muted)}.lane{font-size:13px;fill:var(--fg)}
.lane-line{stroke:#d1d5db;stroke-width:2}.gap{fill:rgba(220,38,38,.15)}.pitr{fill:rgba(124,58,237,.35)}.managed{fill:#7c3aed}
.failed{stroke:var(--crit);stroke-width:2.5}.now{stroke:var(--fg);stroke-dasharray:4 3}
.legend{font-size:13px;color:var(--muted);margin:6px 0 0}.legend i{display:inline-block;width:10px;height:10px;border-radius:5px;margin:0 4px 0 10px;vertical-align:middle}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:14px}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;white-space:nowrap}.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;white-space:nowrap}
.badge.ok{background:var(--ok)}.badge.warn{background:var(--warn)}.badge.crit{background:var(--crit)}.badge.unk{background:var(--unk)}.badge.off{background:#9ca3af}
.nw{white-space:nowrap}
footer{color:var(--muted);font-size:12px;text-align:center;padding:8px}
@media (max-width:600px){main{padding:8px}section{padding:10px}table{font-size:13px}.chart.wide{display:none}}
@media (min-width:601px){.chart.narrow{display:none}}
`;

export function renderHtml(r: ReportData): string {
  // times, sizes, kinds and job names never break across lines: table rows stay one line tall on a desktop
  const t = (iso: string | null | undefined) => nw(formatTime(iso, r.timezone));
  const now = Date.parse(r.generatedAt);
  const s = r.sync;
  const rate = r.successRate.rate === null ? '–' : `${Math.round(r.successRate.rate * 1000) / 10} %`;
  const html: string[] = [];
  html.push(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"><title>hybrid-backup report — ${esc(r.monitor.status.toUpperCase())}</title><style>${CSS}</style></head><body><main>`);
  html.push(`<header class="${esc(r.monitor.status)}"><h1>hybrid-backup: ${esc(r.monitor.status.toUpperCase())}</h1><p>${esc(r.host)}${r.database ? ` · database ${esc(r.database)}` : ''} · ${t(r.generatedAt)}</p></header>`);
  html.push(
    `<section><h2>Recovery point</h2><div class="cards">` +
      `<div class="card"><span>now (both layers)</span><b>${s.recoveryPointHours === null ? 'none' : `${s.recoveryPointHours} h`}</b><span>sync-check ${badge(s.status, s.status.toUpperCase())}</span></div>` +
      `<div class="card"><span>local layer</span><b>${s.layers.local.hours === null ? 'none' : `${s.layers.local.hours} h`}</b><span>${s.local.count} ok backups in ${r.window.days} days</span></div>` +
      `<div class="card"><span>Supabase layer</span><b>${!s.supabase.configured ? 'not configured' : s.layers.supabase.hours === null ? 'none' : `${s.layers.supabase.hours} h`}</b><span>${s.supabase.pitr?.enabled ? 'point-in-time recovery' : s.supabase.configured ? `${s.supabase.count} daily backups` : 'set SUPABASE_PROJECT_REF and SUPABASE_ACCESS_TOKEN'}</span></div>` +
      `<div class="card"><span>backup success rate</span><b>${esc(rate)}</b><span>${r.successRate.ok} of ${r.successRate.total} runs</span></div>` +
      `</div></section>`,
  );
  html.push(
    `<section><h2>Timeline of both layers</h2>${timelineSvg(r)}${timelineSvg(r, 480)}<p class="legend"><i style="background:${KIND_COLOR.daily}"></i>daily<i style="background:${KIND_COLOR.manual}"></i>manual<i style="background:${KIND_COLOR['pre-change']}"></i>pre-change<i style="background:#7c3aed;border-radius:0"></i>Supabase<i style="background:rgba(220,38,38,.3);border-radius:0"></i>gap &gt; ${esc(s.maxGapHours)} h</p>` +
      `<p>${s.gaps.length ? `${s.gaps.length} gap(s): ${s.gaps.map((g) => `${t(g.from)} → ${t(g.to)} (${esc(g.hours)} h)`).join('; ')}` : 'No gaps: some layer could restore to every day of the window.'}</p></section>`,
  );
  html.push(`<section><h2>Backup sizes</h2>${sizesSvg(r)}${sizesSvg(r, 480)}</section>`);
  html.push(`<section><h2>Monitor</h2>${table(['check', 'status', ''], r.monitor.checks.map((c) => [esc(c.name), badge(c.status, c.status.toUpperCase()), esc(c.message)]))}</section>`);
  html.push(
    `<section><h2>Failures</h2>${
      r.failures.length === 0 ? '<p>None in the window.</p>' : table(['started', 'job', 'status', 'reason'], r.failures.map((f) => [t(f.startedAt), nw(f.job), badge('critical', f.status), esc(`${f.code ? `${f.code}: ` : ''}${f.message}`)]))
    }</section>`,
  );
  html.push(
    `<section><h2>Restore drills</h2>${
      r.drills.length === 0
        ? '<p>No restore drill yet (hybrid-backup restore-test).</p>'
        : table(
            ['started', 'backup', 'result', 'tables', 'rows checked', 'took'],
            r.drills.map((d) => [
              t(d.startedAt),
              esc(d.backupId),
              d.ok ? badge('ok', 'passed') : `${badge('critical', 'FAILED')} ${esc(d.error?.message ?? d.mismatches.map((m) => `${m.table}: ${m.actual} of ${m.expected}`).join(', '))}`,
              esc(formatCount(d.tables)),
              esc(formatCount(d.rowsChecked)),
              esc(formatDuration(d.durationMs)),
            ]),
          )
    }</section>`,
  );
  const p = r.supabase.policy;
  html.push(
    `<section><h2>Supabase settings against policy ${badge(p.met ? 'met' : 'not-met', p.met ? 'met' : 'NOT met')}</h2>${r.supabase.snapshot ? `<p>As of the poll ${esc(formatAge(r.supabase.snapshot.takenAt, now))}.</p>` : ''}${table(
      ['item', 'status', 'detail', 'fix'],
      p.items.map((i) => [esc(i.title), badge(i.status, i.status === 'not-met' ? 'NOT MET' : i.status), esc(i.detail), i.status === 'met' ? '' : esc(i.fix ?? '')]),
    )}</section>`,
  );
  html.push(
    `<section><h2>Backups</h2>${table(
      ['id', 'created', 'kind', 'status', 'size', 'drilled', 'offsite', 'description'],
      r.backups.slice(0, 100).map((b) => [esc(b.id), t(b.createdAt), nw(b.kind), badge(b.status === 'ok' ? 'ok' : b.status === 'pruned' ? 'off' : 'critical', b.status), b.status === 'ok' || b.status === 'corrupt' || b.status === 'missing' ? nw(formatBytes(b.bytes)) : '-', b.verifiedAt ? t(b.verifiedAt) : '-', esc(b.offsite?.status ?? '-'), esc(b.description ?? b.error?.message ?? '')]),
    )}</section>`,
  );
  html.push(`<footer>hybrid-backup · window ${t(r.window.from)} → ${t(r.window.to)}</footer></main></body></html>`);
  return html.join('\n');
}
