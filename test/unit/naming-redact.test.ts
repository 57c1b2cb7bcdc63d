import { describe, expect, it } from 'vitest';
import { backupFileName, slugify } from '../../src/dump/naming.js';
import { Redactor } from '../../src/util/redact.js';

describe('backup file names', () => {
  it('is the UTC time, the kind and a slug', () => {
    expect(backupFileName('2026-11-24T03:15:00.123Z', 'pre-change', 'Add orders.discount column', 'none')).toBe('20261124T031500Z_pre-change_add-orders-discount-column.sql');
    expect(backupFileName('2026-11-24T03:15:00.123Z', 'daily', null, 'gzip')).toBe('20261124T031500Z_daily.sql.gz');
    expect(backupFileName('2026-11-24T03:15:00.123Z', 'manual', 'x', 'none', 2)).toBe('20261124T031500Z-2_manual_x.sql');
  });

  it.each([
    ['../../etc/passwd', 'etc-passwd'],
    ['a/b\\c', 'a-b-c'],
    ['tab\there\nnewline\u0000nul', 'tab-here-newline-nul'],
    ['Crème brûlée für Ärzte', 'creme-brulee-fur-arzte'],
    ['日本語のみ', ''],
    ['..', ''],
    ['$(rm -rf /); `x` | y', 'rm-rf-x-y'],
  ])('slug of %j is %j: no separators, dots or control characters', (input, slug) => {
    expect(slugify(input)).toBe(slug);
    expect(slugify(input)).toMatch(/^[a-z0-9-]*$/);
  });

  it('keeps the slug short', () => {
    expect(slugify('x'.repeat(500)).length).toBeLessThanOrEqual(60);
  });
});

describe('Redactor', () => {
  it('masks registered secrets and credentials in URLs, key=value strings and headers', () => {
    const r = new Redactor();
    r.addSecret('s3cr3t-token-value');
    expect(r.redact('token s3cr3t-token-value here')).toBe('token *** here');
    expect(r.redact('postgresql://user:p%40ss@host:5432/db')).toBe('postgresql://user:***@host:5432/db');
    expect(r.redact("host=x password='a b' user=y")).toBe('host=x password=*** user=y');
    expect(r.redact('Authorization: Bearer abcdefghijklmnop')).toBe('Authorization: Bearer ***');
    expect(r.redact('PGPASSWORD=hunter22 pg_dump')).toBe('PGPASSWORD=*** pg_dump');
    expect(r.redactDeep({ a: ['x s3cr3t-token-value'], password: 'zzzz' })).toEqual({ a: ['x ***'], password: '***' });
  });
});
