/**
 * Human formatting: times with the zone names operators know (CET, not GMT+1), counts with their
 * nouns in the right number, counts past the point of meaning capped, hours of recovery point.
 */
import { describe, expect, it } from 'vitest';
import { formatCount, formatCountUpTo, formatHours, formatTime, plural } from '../../src/util/format.js';

const WINTER = '2026-01-15T12:00:00Z';
const SUMMER = '2026-07-15T12:00:00Z';

describe('formatTime', () => {
  it('shows a UTC zone (formatted without Intl) exactly as Intl shows it', () => {
    const viaIntl = (iso: string, timeZone: string) => {
      const p = Object.fromEntries(
        new Intl.DateTimeFormat('en-GB', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'short' })
          .formatToParts(new Date(iso))
          .map((x) => [x.type, x.value]),
      );
      return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
    };
    const times = [WINTER, SUMMER, '2026-03-29T01:30:00.123Z', '2026-12-31T23:59:59.999Z', '2000-02-29T00:00:00Z'];
    for (const zone of ['UTC', 'Etc/UTC', 'Etc/Universal', 'Universal', 'Etc/Zulu', 'Zulu', 'GMT', 'Etc/GMT']) {
      for (const t of times) expect(formatTime(t, zone), `${t} in ${zone}`).toBe(viaIntl(t, zone));
    }
    expect(formatTime(WINTER, 'UTC')).toBe('2026-01-15 12:00:00 UTC');
  });
  it('names the zone as the README does: CET and CEST for Europe/Berlin, not GMT+1', () => {
    expect(formatTime('2026-11-24T17:00:00Z', 'Europe/Berlin')).toBe('2026-11-24 18:00:00 CET');
    expect(formatTime(SUMMER, 'Europe/Berlin')).toBe('2026-07-15 14:00:00 CEST');
  });

  it.each([
    ['UTC', 'UTC', 'UTC'],
    ['Europe/London', 'GMT', 'BST'],
    ['Europe/Lisbon', 'WET', 'WEST'],
    ['Europe/Helsinki', 'EET', 'EEST'],
    ['America/New_York', 'EST', 'EDT'],
    ['America/Los_Angeles', 'PST', 'PDT'],
    ['Australia/Sydney', 'AEDT', 'AEST'],
  ])('%s: %s in winter, %s in summer', (tz, winter, summer) => {
    expect(formatTime(WINTER, tz).endsWith(` ${winter}`)).toBe(true);
    expect(formatTime(SUMMER, tz).endsWith(` ${summer}`)).toBe(true);
  });

  it('a zone without a common short name shows its offset', () => {
    expect(formatTime(WINTER, 'Europe/Moscow')).toBe('2026-01-15 15:00:00 GMT+3');
    expect(formatTime(WINTER, 'Asia/Tokyo')).toMatch(/^2026-01-15 21:00:00 (GMT\+9|JST)$/);
  });

  it('the wall time is the zone\'s, across a DST change', () => {
    // Europe/Berlin leaves summer time at 01:00 UTC on 2026-10-25
    expect(formatTime('2026-10-25T00:30:00Z', 'Europe/Berlin')).toBe('2026-10-25 02:30:00 CEST');
    expect(formatTime('2026-10-25T01:30:00Z', 'Europe/Berlin')).toBe('2026-10-25 02:30:00 CET');
  });

  it('no time is a dash; an unparsable one is shown as given', () => {
    expect(formatTime(null, 'UTC')).toBe('-');
    expect(formatTime(undefined, 'UTC')).toBe('-');
    expect(formatTime('yesterday', 'UTC')).toBe('yesterday');
  });
});

describe('counts', () => {
  it('plural: one backup, 2 backups, 0 backups, 1,204 rows, irregular nouns', () => {
    expect(plural(1, 'backup')).toBe('1 backup');
    expect(plural(2, 'backup')).toBe('2 backups');
    expect(plural(0, 'backup')).toBe('0 backups');
    expect(plural(1204, 'row')).toBe('1,204 rows');
    expect(plural(1, 'copy', 'copies')).toBe('1 copy');
    expect(plural(3, 'copy', 'copies')).toBe('3 copies');
  });

  it('formatCountUpTo: a count past the cap says "more than" the cap', () => {
    expect(formatCountUpTo(117_306_212, 1000)).toBe('more than 1,000');
    expect(formatCountUpTo(1001, 1000)).toBe('more than 1,000');
    expect(formatCountUpTo(1000, 1000)).toBe('1,000');
    expect(formatCountUpTo(12, 1000)).toBe('12');
    expect(formatCount(117_306_212)).toBe('117,306,212');
  });

  it('formatHours: one decimal, "under 0.1 h" for a point just taken, "none" without one', () => {
    expect(formatHours(3.1)).toBe('3.1 h');
    expect(formatHours(26)).toBe('26 h');
    expect(formatHours(1234.56)).toBe('1,234.6 h');
    expect(formatHours(0)).toBe('under 0.1 h');
    expect(formatHours(0.04)).toBe('under 0.1 h');
    expect(formatHours(null)).toBe('none');
  });
});
