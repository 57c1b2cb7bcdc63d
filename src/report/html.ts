/**
 * The report as one self-contained HTML page: no scripts, no external styles or fonts, inline SVG
 * charts (a timeline of both layers, backup sizes over time). Readable on a phone: fluid width,
 * charts drawn again for narrow screens, and tables that become one block per row under 600 px,
 * so nothing scrolls sideways.
 */
import { formatAge, formatBytes, formatCount, formatDuration, formatHours, formatTime, plural, printable } from '../util/format.js';
import { attention, drillFailure, filesCell, type ReportData } from './build.js';

const esc = (s: unknown) => printable(String(s)).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const KIND_COLOR = { daily: '#2563eb', manual: '#16a34a', 'pre-change': '#ea580c' } as const;
const STATUS_CLASS: Record<string, string> = { ok: 'ok', met: 'ok', warning: 'warn', 'not-met': 'crit', critical: 'crit', unknown: 'unk', off: 'off', advice: 'off' };

/** What the charts span: the report's window, or, while the history is much shorter, the history. */
export function chartRange(r: ReportData): { from: number; to: number; historyFrom: number | null } {
  const to = Date.parse(r.window.to);
  const windowFrom = Date.parse(r.window.from);
  const pitr = r.sync.supabase.pitr;
  const times = [...r.backups.map((b) => b.createdAt), ...r.sync.supabase.points, ...(pitr?.enabled && pitr.earliest ? [pitr.earliest] : []), ...r.sync.gaps.map((g) => g.from)]
    .map((t) => Date.parse(t))
    .filter((t) => Number.isFinite(t) && t >= windowFrom && t <= to);
  if (times.length === 0) return { from: windowFrom, to, historyFrom: null };
  const first = Math.min(...times);
  // a tenth of the span before the first point, and at least a day: points do not sit on the edge
  const from = to - Math.max(DAY, (to - first) * 1.1);
  // within two days of the window's start the whole window reads better (its ticks stay put)
  return from - windowFrom < 2 * DAY ? { from: windowFrom, to, historyFrom: null } : { from, to, historyFrom: first };
}

const wallFormats = new Map<string, Intl.DateTimeFormat>();
/** How far the zone's wall clock is ahead of UTC at `t`, in ms. */
function zoneOffset(t: number, tz: string): number {
  let f = wallFormats.get(tz);
  if (!f) wallFormats.set(tz, (f = new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' })));
  const p = Object.fromEntries(f.formatToParts(new Date(t)).map((x) => [x.type, Number(x.value)]));
  return Date.UTC(p.year!, p.month! - 1, p.day!, p.hour!, p.minute!, p.second!) - Math.floor(t / 1000) * 1000;
}

const TICK_HOURS = [1, 2, 3, 6, 12, 24, 48, 168, 336];

/**
 * Axis ticks on the zone's wall clock, at most `max` of them: whole hours (`06:00`, a date at
 * midnight) for a short span, local midnights (`29 Oct`) every day, two days or week for a long one.
 */
export function timeTicks(from: number, to: number, tz: string, max: number): Array<{ t: number; label: string }> {
  const hours = TICK_HOURS.find((h) => (to - from) / (h * HOUR) <= max) ?? TICK_HOURS[TICK_HOURS.length - 1]!;
  const step = hours * HOUR;
  const unit = hours < 24 ? step : DAY;
  const day = new Intl.DateTimeFormat('en-GB', { timeZone: tz, month: 'short', day: 'numeric' });
  const clock = new Intl.DateTimeFormat('en-GB', { timeZone: tz, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const out: Array<{ t: number; label: string }> = [];
  const off = zoneOffset(from, tz);
  let t = Math.ceil((from + off) / unit) * unit - off;
  t += off - zoneOffset(t, tz); // a daylight-saving change between `from` and the first tick
  for (let i = 0; t <= to && i < 100; i++) {
    const wall = t + zoneOffset(t, tz);
    out.push({ t, label: hours >= 24 || wall % DAY === 0 ? day.format(new Date(t)) : clock.format(new Date(t)) });
    const next = t + step;
    // ticks of a day or more stay on midnight across a daylight-saving change
    t = hours >= 24 ? next + zoneOffset(t, tz) - zoneOffset(next, tz) : next;
  }
  return out;
}

function timeAxis(from: number, to: number, x: (t: number) => number, y1: number, y2: number, tz: string, narrow: boolean): string {
  const right = x(to);
  return timeTicks(from, to, tz, narrow ? 5 : 8)
    .map(({ t, label }) => {
      const xx = x(t).toFixed(1);
      // a label at the right edge ends there rather than running off the chart
      const anchor = x(t) > right - 14 ? 'end' : 'middle';
      return `<line x1="${xx}" y1="${y1}" x2="${xx}" y2="${y2}" class="grid"/><text x="${xx}" y="${y2 + 14}" class="tick" text-anchor="${anchor}">${esc(label)}</text>`;
    })
    .join('');
}

/**
 * Both layers on one time axis: local backups, managed backups, the PITR range, the gaps.
 * `W` is the drawing's width: 1000 for screens, 480 for phones (so its text stays legible).
 */
export function timelineSvg(r: ReportData, W = 1000): string {
  const narrow = W < 600;
  const L = narrow ? 70 : 92;
  const R = 16;
  const { from, to } = chartRange(r);
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
    parts.push(`<rect class="pitr" x="${a.toFixed(1)}" y="${laneManaged - 9}" width="${Math.max(2, x(Date.parse(pitr.latest)) - a).toFixed(1)}" height="18" rx="4"><title>PITR window ${esc(formatTime(pitr.earliest, r.timezone))} → ${esc(formatTime(pitr.latest, r.timezone))}</title></rect>`);
  }
  for (const b of r.backups.filter((b) => b.status === 'ok' || b.status === 'pruned')) {
    parts.push(`<circle cx="${x(Date.parse(b.createdAt)).toFixed(1)}" cy="${laneLocal}" r="6" class="${b.kind}"><title>backup ${b.id} (${esc(b.kind)}) ${esc(formatTime(b.createdAt, r.timezone))}</title></circle>`);
  }
  for (const b of r.backups.filter((b) => b.status === 'failed' || b.status === 'interrupted')) {
    parts.push(`<path class="failed" d="M${(x(Date.parse(b.createdAt)) - 5).toFixed(1)} ${laneLocal - 5} l10 10 m0 -10 l-10 10"><title>${esc(b.status)} backup ${b.id} ${esc(formatTime(b.createdAt, r.timezone))}</title></path>`);
  }
  for (const t of r.sync.supabase.points) {
    parts.push(`<rect class="managed" x="${(x(Date.parse(t)) - 5).toFixed(1)}" y="${laneManaged - 5}" width="10" height="10"><title>managed backup ${esc(formatTime(t, r.timezone))}</title></rect>`);
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
  const R = 16;
  const B = 30;
  const parts: string[] = [`<svg class="chart sizes ${narrow ? 'narrow' : 'wide'}" viewBox="0 0 ${W} ${H}" role="img" aria-label="Backup sizes over time" xmlns="http://www.w3.org/2000/svg">`];
  if (r.sizes.length === 0) {
    parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="tick">no backups in the window</text></svg>`);
    return parts.join('');
  }
  const { from, to } = chartRange(r);
  const max = Math.max(...r.sizes.map((s) => s.bytes), 1);
  const x = (t: number) => L + ((Math.min(Math.max(t, from), to) - from) / Math.max(1, to - from)) * (W - L - R);
  const y = (b: number) => H - B - (b / max) * (H - B - 16);
  parts.push(timeAxis(from, to, x, 16, H - B, r.timezone, narrow));
  parts.push(`<text x="${L - 6}" y="20" text-anchor="end" class="tick">${esc(formatBytes(max))}</text><text x="${L - 6}" y="${H - B}" text-anchor="end" class="tick">0</text>`);
  const w = Math.max(2, Math.min(18, ((W - L) / Math.max(r.sizes.length, 1)) * 0.6));
  for (const s of r.sizes) {
    const xx = Math.min(x(Date.parse(s.at)) - w / 2, W - R - w);
    parts.push(`<rect x="${xx.toFixed(1)}" y="${y(s.bytes).toFixed(1)}" width="${w.toFixed(1)}" height="${(H - B - y(s.bytes)).toFixed(1)}" class="${s.kind}"><title>backup ${s.id}: ${esc(formatBytes(s.bytes))}</title></rect>`);
  }
  parts.push('</svg>');
  return parts.join('');
}

const nw = (s: string) => `<span class="nw">${esc(s)}</span>`;
const badge = (status: string, label = status) => `<span class="badge ${STATUS_CLASS[status] ?? 'unk'}">${esc(label)}</span>`;
/** A check's name on one line; `offsite-copy:<target>` may break after the colon, nowhere else. */
const checkName = (name: string) => name.split(/(?<=:)/).map(nw).join('<wbr>');

/**
 * One column: its heading, a class for its cells (`nw` keeps them on one line, `msg` lets long
 * words break, `full` gives them a line of their own on a phone), and on a phone, where headings
 * are hidden, a label shown before the value.
 */
interface Column {
  head: string;
  cls?: string;
  label?: string;
}

/**
 * A table (cells are HTML). On a phone each row is one block: cells flow on a line, `full` ones
 * below, an empty cell (`-` or nothing) is left out.
 */
function table(name: string, cols: Column[], rows: string[][]): string {
  const cell = (c: Column, v: string) => {
    const empty = v === '' || v === '-';
    const cls = [c.cls, empty ? 'empty' : ''].filter(Boolean).join(' ');
    return `<td${cls ? ` class="${cls}"` : ''}${c.label && !empty ? ` data-label="${esc(c.label)}"` : ''}>${v}</td>`;
  };
  return (
    `<div class="scroll"><table class="stack ${name}"><thead><tr>${cols.map((c) => `<th>${esc(c.head)}</th>`).join('')}</tr></thead>` +
    `<tbody>${rows.map((r) => `<tr>${r.map((v, i) => cell(cols[i]!, v)).join('')}</tr>`).join('')}</tbody></table></div>`
  );
}

const CSS = `
:root{color-scheme:light;--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--ok:#16a34a;--warn:#b45309;--crit:#dc2626;--unk:#7c3aed}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:#f9fafb}
main{max-width:1040px;margin:0 auto;padding:16px}header{padding:16px;border-radius:10px;color:#fff;margin-bottom:16px}
header.ok{background:var(--ok)}header.warning{background:var(--warn)}header.critical{background:var(--crit)}header.unknown{background:var(--unk)}
header h1{margin:0 0 4px;font-size:22px}header p{margin:0;opacity:.95}header p+p,header ul+p{margin-top:6px}header a{color:#fff}header ul.why{margin:6px 0 0;padding-left:20px}header ul.why li+li{margin-top:2px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin-bottom:16px}
h2{font-size:17px;margin:0 0 10px}.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px}.card b{display:block;font-size:20px}.card span{color:var(--muted);font-size:13px}.card .badge{color:#fff}
.card.now{grid-column:1/-1}.card ul{margin:4px 0 0;padding-left:20px;font-size:14px}.card p{margin:4px 0 0;font-size:14px}
.chart{width:100%;height:auto;display:block}.chart .grid{stroke:var(--line)}.chart .tick{font-size:12px;fill:var(--muted)}.chart .lane{font-size:13px;fill:var(--fg)}
.chart .lane-line{stroke:#d1d5db;stroke-width:2}.chart .gap{fill:rgba(220,38,38,.15)}.chart .pitr{fill:rgba(124,58,237,.35)}.chart .managed{fill:#7c3aed}
.chart .daily{fill:${KIND_COLOR.daily}}.chart .manual{fill:${KIND_COLOR.manual}}.chart .pre-change{fill:${KIND_COLOR['pre-change']}}
.chart .failed{stroke:var(--crit);stroke-width:2.5}.chart .now{stroke:var(--fg);stroke-dasharray:4 3}
.legend{font-size:13px;color:var(--muted);margin:6px 0 0;display:flex;flex-wrap:wrap;gap:2px 14px}.legend span{white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:4px;vertical-align:-1px}
.legend .daily{background:${KIND_COLOR.daily}}.legend .manual{background:${KIND_COLOR.manual}}.legend .pre-change{background:${KIND_COLOR['pre-change']}}
.legend .managed{background:#7c3aed;border-radius:0}.legend .gap{background:rgba(220,38,38,.3);border-radius:0}
.note{color:var(--muted);font-size:14px}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:14px}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;white-space:nowrap}.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;white-space:nowrap}
.badge.ok{background:var(--ok)}.badge.warn{background:var(--warn)}.badge.crit{background:var(--crit)}.badge.unk{background:var(--unk)}.badge.off{background:#6b7280}
.nw{white-space:nowrap}.msg{overflow-wrap:anywhere}.part{display:inline-block;max-width:100%;overflow-wrap:anywhere}
footer{color:var(--muted);font-size:12px;text-align:center;padding:8px}
@media (max-width:600px){
main{padding:8px}section{padding:10px 12px}header{padding:12px}header h1{font-size:20px}
.chart.wide{display:none}
table.stack{font-size:14px}table.stack thead{display:none}table.stack,table.stack tbody{display:block}
table.stack tr{display:flex;flex-wrap:wrap;align-items:baseline;gap:2px 10px;padding:8px 0;border-bottom:1px solid var(--line)}
table.stack td{display:block;padding:0;border:0}table.stack td.full{flex-basis:100%}table.stack td.empty{display:none}
table.stack td[data-label]::before{content:attr(data-label) " ";color:var(--muted)}
}
@media (min-width:601px){.chart.narrow{display:none}}
`;

export function renderHtml(r: ReportData): string {
  // times, sizes, kinds and job names never break across lines: table rows stay one line tall on a desktop
  const t = (iso: string | null | undefined) => nw(formatTime(iso, r.timezone));
  const now = Date.parse(r.generatedAt);
  const s = r.sync;
  const rate = r.successRate.rate === null ? '–' : `${Math.round(r.successRate.rate * 1000) / 10} %`;
  const html: string[] = [];
  html.push(
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"><title>hybrid-backup report — ${esc(r.monitor.status.toUpperCase())}</title><style>${CSS}</style></head><body><main>`,
  );

  // the header: the verdict, where it is about, and why: what the worst checks say, then the others' names
  const { worst, others } = attention(r);
  const counted = r.monitor.checks.filter((c) => c.status !== 'off').length;
  const why = worst.length
    ? `<ul class="why">${worst.map((c) => `<li class="msg">${checkName(c.name)}: ${esc(c.message)}</li>`).join('')}</ul>` +
      (others.length ? `<p>Also: ${others.map((c) => `${checkName(c.name)} (${esc(c.status)})`).join(', ')}; see <a href="#monitor">Monitor</a>.</p>` : '')
    : `<p>${counted === 1 ? 'The one check is' : `All ${formatCount(counted)} checks are`} OK.</p>`;
  const dbNote =
    r.database && r.backupDatabase && r.backupDatabase !== r.database
      ? `<p>The newest backup is of database ${nw(r.backupDatabase)}, not the configured ${nw(r.database)}: DATABASE_URL changed since.</p>`
      : '';
  html.push(
    `<header class="${esc(r.monitor.status)}"><h1>hybrid-backup: ${esc(r.monitor.status.toUpperCase())}</h1>` +
      `<p>${[`host ${r.host}`, r.database ? `database ${r.database}` : 'no database configured', formatTime(r.generatedAt, r.timezone)].map((x) => `<span class="part">${esc(x)}</span>`).join(' · ')}</p>${why}${dbNote}</header>`,
  );

  // the recovery point: now across both layers (and why sync-check says what it says), then each layer
  const reasons = s.messages.length ? `<ul>${s.messages.map((m) => `<li class="msg">${esc(m)}</li>`).join('')}</ul>` : `<p>No gap longer than ${esc(s.maxGapHours)} h, and the newest restore point is recent.</p>`;
  const layerCount = (n: number, what: string) => `${plural(n, what)} in the last ${plural(r.window.days, 'day')}`;
  html.push(
    `<section><h2>Recovery point</h2><div class="cards">` +
      `<div class="card now"><span>now (both layers)</span><b>${esc(formatHours(s.recoveryPointHours))}</b><span>${s.recoveryPointHours === null ? 'no layer has a restore point' : 'of writes would be lost restoring the newest point'}</span>` +
      `<p>sync-check ${badge(s.status, s.status.toUpperCase())}</p>${reasons}</div>` +
      `<div class="card"><span>local layer</span><b>${esc(formatHours(s.layers.local.hours))}</b><span>${layerCount(s.local.count, 'ok backup')}</span></div>` +
      `<div class="card"><span>Supabase layer</span><b>${!s.supabase.configured ? 'not configured' : esc(formatHours(s.layers.supabase.hours))}</b><span>${s.supabase.pitr?.enabled ? 'point-in-time recovery' : s.supabase.configured ? layerCount(s.supabase.count, 'daily backup') : 'set SUPABASE_PROJECT_REF and SUPABASE_ACCESS_TOKEN'}</span></div>` +
      `<div class="card"><span>backup success rate</span><b>${esc(rate)}</b><span>${r.successRate.total === 0 ? 'no finished backup run' : `${formatCount(r.successRate.ok)} of ${plural(r.successRate.total, 'run')}`}</span></div>` +
      `</div></section>`,
  );

  const range = chartRange(r);
  const history = range.historyFrom === null ? '' : `<p class="note">The history starts with the first backup, ${t(new Date(range.historyFrom).toISOString())}; the charts grow to the ${plural(r.window.days, 'day')} of the window.</p>`;
  const legend =
    `<p class="legend"><span><i class="daily"></i>daily</span><span><i class="manual"></i>manual</span><span><i class="pre-change"></i>pre-change</span>` +
    `<span><i class="managed"></i>Supabase</span><span><i class="gap"></i>gap &gt; ${esc(s.maxGapHours)} h</span></p>`;
  const gaps = s.gaps.length
    ? `${plural(s.gaps.length, 'gap')} longer than ${esc(s.maxGapHours)} h: ${s.gaps.map((g) => `${t(g.from)} → ${t(g.to)} (${esc(g.hours)} h)`).join('; ')}`
    : range.historyFrom === null
      ? 'No gaps: some layer could restore to every day of the window.'
      : 'No gaps since the first backup.';
  html.push(`<section><h2>Timeline of both layers</h2>${timelineSvg(r)}${timelineSvg(r, 480)}${legend}<p>${gaps}</p>${history}</section>`);
  html.push(`<section><h2>Backup sizes</h2>${sizesSvg(r)}${sizesSvg(r, 480)}</section>`);

  html.push(
    `<section id="monitor"><h2>Monitor</h2>${table(
      'monitor',
      [{ head: 'check', cls: 'name' }, { head: 'status' }, { head: 'message', cls: 'full msg' }],
      r.monitor.checks.map((c) => [checkName(c.name), badge(c.status, c.status.toUpperCase()), esc(c.message)]),
    )}</section>`,
  );
  html.push(
    `<section><h2>Failures</h2>${
      r.failures.length === 0
        ? '<p>None in the window.</p>'
        : table(
            'failures',
            [{ head: 'started' }, { head: 'job' }, { head: 'status' }, { head: 'reason', cls: 'full msg' }],
            r.failures.map((f) => [t(f.startedAt), nw(f.job), badge('critical', f.status), esc(`${f.code ? `${f.code}: ` : ''}${f.message}`)]),
          )
    }</section>`,
  );
  html.push(
    `<section><h2>Restore drills</h2>${
      r.drills.length === 0
        ? '<p>No restore drill yet: run npm run backup:restore-test (the service runs one weekly).</p>'
        : table(
            'drills',
            [{ head: 'started' }, { head: 'backup', label: 'backup' }, { head: 'result', cls: 'msg' }, { head: 'tables', label: 'tables' }, { head: 'rows checked', label: 'rows checked' }, { head: 'took', label: 'took' }],
            r.drills.map((d) => [t(d.startedAt), esc(d.backupId), d.ok ? badge('ok', 'passed') : `${badge('critical', 'FAILED')} ${esc(drillFailure(d))}`, esc(formatCount(d.tables)), esc(formatCount(d.rowsChecked)), nw(formatDuration(d.durationMs))]),
          )
    }</section>`,
  );
  const p = r.supabase.policy;
  html.push(
    `<section><h2>Supabase settings against policy ${badge(p.met ? 'met' : 'not-met', p.met ? 'MET' : 'NOT MET')}</h2>${r.supabase.snapshot ? `<p>As of the poll ${esc(formatAge(r.supabase.snapshot.takenAt, now))}.</p>` : ''}${table(
      'policy',
      [{ head: 'item' }, { head: 'status' }, { head: 'detail', cls: 'full msg' }, { head: 'fix', cls: 'full msg', label: 'fix:' }],
      p.items.map((i) => [esc(i.title), badge(i.status, i.status === 'not-met' ? 'NOT MET' : i.status.toUpperCase()), esc(i.detail), i.status === 'met' ? '' : esc(i.fix ?? '')]),
    )}</section>`,
  );
  const shown = r.backups.slice(0, 100);
  html.push(
    `<section><h2>Backups</h2>${table(
      'backups',
      [{ head: 'id', label: 'backup' }, { head: 'created' }, { head: 'kind', cls: 'nw' }, { head: 'status' }, { head: 'size', cls: 'nw' }, { head: 'drilled', label: 'drilled' }, { head: 'offsite', label: 'offsite' }, { head: 'files', label: 'files', cls: 'nw' }, { head: 'description', cls: 'full msg' }],
      shown.map((b) => [
        esc(b.id),
        t(b.createdAt),
        esc(b.kind),
        badge(b.status === 'ok' ? 'ok' : b.status === 'pruned' ? 'off' : 'critical', b.status),
        b.status === 'ok' || b.status === 'corrupt' || b.status === 'missing' ? esc(formatBytes(b.bytes)) : '-',
        b.verifiedAt ? t(b.verifiedAt) : '-',
        esc(b.offsite?.status ?? '-'),
        b.storage && !b.storage.complete ? badge('warning', filesCell(b)) : esc(filesCell(b)),
        esc(b.description ?? b.error?.message ?? ''),
      ]),
    )}${shown.length < r.backups.length ? `<p class="note">The newest ${formatCount(shown.length)} of ${plural(r.backups.length, 'backup')} in the window (hybrid-backup list shows them all).</p>` : ''}</section>`,
  );
  html.push(`<footer>hybrid-backup · window ${t(r.window.from)} → ${t(r.window.to)}</footer></main></body></html>`);
  return html.join('\n');
}
