/** Retention's weekly and monthly keeps: the periods they look back over, across DST changes. */
import { describe, expect, it } from 'vitest';
import { isoWeek, monthLabel, recentLabels } from '../../src/backup/retention.js';

describe('recent periods', () => {
  it('no week is skipped across a DST change (a 23-hour day)', () => {
    // Europe/Berlin moved to summer time on 2026-03-29; late that evening it is Monday the 30th
    const asOf = new Date('2026-03-29T22:30:00Z');
    const weeks = recentLabels(asOf, 3, (iso) => isoWeek(iso, 'Europe/Berlin'), 7);
    expect([...weeks]).toEqual(['2026-W14', '2026-W13', '2026-W12']);
  });
  it('months back to back, through February and a change of year', () => {
    const months = recentLabels(new Date('2026-03-01T00:30:00Z'), 4, (iso) => monthLabel(iso, 'UTC'), 28);
    expect([...months]).toEqual(['2026-03', '2026-02', '2026-01', '2025-12']);
  });
});
