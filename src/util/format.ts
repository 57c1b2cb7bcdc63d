/** Human formatting: sizes, durations, times, number groups and plain-text tables. */

import { isUtc } from './time-zone.js';

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < units.length - 1);
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]}`;
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

/** `0:05`, `12:34`, `1:02:03` for progress lines. */
export function formatClock(ms: number): string {
  const t = Math.floor(ms / 1000);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = t % 60;
  return h ? `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}` : `${m}:${String(s).padStart(2, '0')}`;
}

export function formatCount(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  return n.toLocaleString('en-US');
}

/**
 * The locales asked, in order, for a zone's short name: the first that knows a name for the zone
 * (not a `GMT+1` offset) gives it — en-GB knows Europe's (CET/CEST, GMT/BST, EET, WET), en-US
 * North America's (EST/EDT, PST, …), and so on. A zone none of them names is shown as its offset.
 */
const ZONE_NAME_LOCALES = ['en-GB', 'en-US', 'en-AU', 'en-NZ', 'en-IN', 'en-IE', 'en-ZA', 'en-CA'];
/** `GMT+1`, `GMT-03:30`, `UTC+2`: an offset, not a name. */
const OFFSET_NAME = /^(GMT|UTC)[+\-\u2212]/;
const timeFormats = new Map<string, Intl.DateTimeFormat>();

function timeFormat(locale: string, timeZone: string): Intl.DateTimeFormat {
  const key = `${locale} ${timeZone}`;
  let f = timeFormats.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat(locale, {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hourCycle: 'h23',
      timeZoneName: 'short',
    });
    timeFormats.set(key, f);
  }
  return f;
}

/** Which locale names `timeZone` (its winter and summer names both), else the first. */
const zoneLocales = new Map<string, string>();
function zoneLocale(timeZone: string): string {
  let locale = zoneLocales.get(timeZone);
  if (locale === undefined) {
    const probes = [Date.UTC(2026, 0, 15, 12), Date.UTC(2026, 6, 15, 12)].map((t) => new Date(t));
    const named = (l: string) => probes.every((d) => !OFFSET_NAME.test(timeFormat(l, timeZone).formatToParts(d).find((p) => p.type === 'timeZoneName')?.value ?? 'GMT+'));
    locale = ZONE_NAME_LOCALES.find(named) ?? ZONE_NAME_LOCALES[0]!;
    zoneLocales.set(timeZone, locale);
  }
  return locale;
}

/**
 * `2026-11-24 04:15:00 CET` in the given zone: the zone's common short name where one is known
 * (CET/CEST, EST/EDT, UTC, …), else its offset (`GMT+3`). An unknown zone throws a RangeError, as
 * Intl does; an unparsable time is returned as given.
 */
export function formatTime(iso: string | null | undefined, timeZone: string): string {
  if (!iso) return '-';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  // what Intl shows for a UTC zone, without Intl (see util/time-zone.ts)
  if (isUtc(timeZone) && d.getUTCFullYear() >= 1000 && d.getUTCFullYear() <= 9999) return `${d.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
  const parts = timeFormat(zoneLocale(timeZone), timeZone).formatToParts(d);
  const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

/**
 * A count and its noun, the noun in the plural unless the count is one: `1 backup`, `3 backups`,
 * `1,204 rows`; an unknown count is `? rows`. `many` for irregular plurals
 * (`plural(n, 'copy', 'copies')`).
 */
export function plural(n: number | null | undefined, one: string, many = `${one}s`): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return `? ${many}`;
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

/**
 * A count that means nothing past a point: `more than 1,000` instead of `117,306,212` (room for
 * backups on a large disk, say). Below the cap, the count itself.
 */
export function formatCountUpTo(n: number, cap: number): string {
  return n > cap ? `more than ${formatCount(cap)}` : formatCount(n);
}

/**
 * Hours, as the recovery point is given (one decimal): `3.1 h`; `under 0.1 h` for a point taken
 * minutes ago (rounded to zero); `none` without one.
 */
export function formatHours(h: number | null | undefined): string {
  if (h === null || h === undefined || !Number.isFinite(h)) return 'none';
  return h < 0.1 ? 'under 0.1 h' : `${formatCount(Math.round(h * 10) / 10)} h`;
}

/** `3h ago`, `2d ago` */
export function formatAge(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const ms = now - new Date(iso).getTime();
  return ms < 0 ? `in ${formatDuration(-ms)}` : `${formatDuration(ms)} ago`;
}

/**
 * Control characters made visible: `\n`, `\r`, `\t`, `\x1b`, `\u202e`, … — so text that came
 * from outside (a backup's description, an error, a table name) can neither break a line or a table
 * nor drive the terminal (colours, titles, cursor moves, hidden text). JSON keeps the exact text.
 * `keepNewlines` leaves `\n` alone (for a whole rendered document whose lines are ours).
 */
export function printable(s: string, keepNewlines = false): string {
  // C0 and C1 controls, DEL, and the bidirectional overrides that reorder what is shown
  return s.replace(keepNewlines ? /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g : /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
    if (named[c]) return named[c]!;
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * A plain-text table: columns padded to their widest cell; the last column is not padded. Cells
 * are shown {@link printable}: one line each, whatever they hold.
 */
export function table(header: string[], rowsIn: string[][]): string {
  const rows = rowsIn.map((r) => r.map((c) => printable(c)));
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Parses `90s`, `30m`, `24h`, `7d`, `2w` into milliseconds; null when malformed. */
export function parseDuration(s: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$/i.exec(s);
  if (!m) return null;
  const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 }[m[2]!.toLowerCase() as 's' | 'm' | 'h' | 'd' | 'w'];
  return Number(m[1]) * unit;
}
