/** The timeline of both layers, from synthetic ledgers and snapshots. */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import type { Backup, SupabaseSnapshot } from '../../src/domain/types.js';
import { syncCheck } from '../../src/monitor/sync-check.js';

const NOW = Date.parse('2026-11-24T12:00:00Z');
const H = 3_600_000;
const config = loadConfig({ cwd: path.join('/tmp', 'no-such-dir-hb'), env: { TZ: 'UTC' } });

function backup(hoursAgo: number, status: Backup['status'] = 'ok'): Backup {
  return { id: hoursAgo, kind: 'daily', description: null, file: '/x', bytes: 1, sha256: 'a', createdAt: new Date(NOW - hoursAgo * H).toISOString(), status } as Backup;
}

function snapshot(over: Partial<SupabaseSnapshot>): SupabaseSnapshot {
  return {
    takenAt: new Date(NOW - H).toISOString(),
    configured: true,
    enabled: true,
    projectRef: 'abcdefghijklmnopqrst',
    project: null,
    region: 'eu',
    pitrEnabled: false,
    walgEnabled: true,
    backups: [],
    latestBackupAt: null,
    failedBackups: 0,
    physical: { earliest: null, latest: null },
    addons: null,
    schedule: null,
    notes: [],
    ...over,
  };
}

const managed = (hoursAgo: number, status = 'COMPLETED') => ({ id: null, status, insertedAt: new Date(NOW - hoursAgo * H).toISOString(), physical: false });

describe('sync-check', () => {
  it('daily layers 12 hours apart: no gaps, the recovery point from the newest of either', () => {
    const local = Array.from({ length: 10 }, (_, i) => backup(3 + i * 24));
    const snap = snapshot({ backups: Array.from({ length: 7 }, (_, i) => managed(15 + i * 24)) });
    const d = syncCheck(config, local, snap, NOW);
    expect(d.status).toBe('ok');
    expect(d.gaps).toEqual([]);
    expect(d.recoveryPointHours).toBe(3);
    expect(d.layers).toEqual({ local: { hours: 3 }, supabase: { hours: 15 } });
    expect(d.local.count).toBe(10);
    expect(d.supabase.count).toBe(7);
  });

  it('finds the gaps where neither layer has a restore point', () => {
    // local: daily, but four days missing; Supabase: daily only for the last two days
    const local = [2, 26, 50, 74, 194, 218].map((h) => backup(h));
    const snap = snapshot({ backups: [managed(14), managed(38)] });
    const d = syncCheck(config, local, snap, NOW);
    expect(d.status).toBe('warning');
    expect(d.gaps).toEqual([{ from: new Date(NOW - 194 * H).toISOString(), to: new Date(NOW - 74 * H).toISOString(), hours: 120 }]);
    expect(d.messages.join()).toMatch(/1 gap longer than 26 h/);
  });

  it('with PITR, the window is one continuous range that closes gaps and sets the recovery point', () => {
    const local = [2, 194].map((h) => backup(h));
    const snap = snapshot({ pitrEnabled: true, physical: { earliest: new Date(NOW - 7 * 24 * H).toISOString(), latest: new Date(NOW - 0.05 * H).toISOString() } });
    const d = syncCheck(config, local, snap, NOW);
    expect(d.gaps).toEqual([]);
    expect(d.recoveryPointHours).toBe(0.1); // rounded to a tenth
    expect(d.supabase.pitr).toMatchObject({ enabled: true });
    expect(d.status).toBe('ok');
  });

  it('a stale newest point is a warning, then critical; nothing at all is critical', () => {
    expect(syncCheck(config, [backup(30)], snapshot({}), NOW)).toMatchObject({ status: 'warning', recoveryPointHours: 30 });
    expect(syncCheck(config, [backup(60)], snapshot({}), NOW)).toMatchObject({ status: 'critical', recoveryPointHours: 60 });
    expect(syncCheck(config, [], null, NOW)).toMatchObject({ status: 'critical', recoveryPointHours: null });
  });

  it('ignores failed backups and points outside the retention window', () => {
    const d = syncCheck(config, [backup(5, 'failed'), backup(40 * 24)], snapshot({ backups: [managed(5, 'FAILED')] }), NOW);
    expect(d.local.count).toBe(0);
    expect(d.supabase.count).toBe(0);
    expect(d.recoveryPointHours).toBeNull();
  });
  it('says the poll failed, with its error, rather than "not configured"', () => {
    const configured = { ...config, supabase: { ...config.supabase, projectRef: 'abcdefghijklmnopqrst', accessToken: 'sbp_x' } };
    const failed = { takenAt: new Date(NOW - 2 * H).toISOString(), error: { code: 'supabase-unauthorized', message: 'the Supabase access token is invalid or expired (401)' } };
    const never = syncCheck(configured, [backup(3)], null, NOW, failed);
    expect(never.status).toBe('warning');
    expect(never.messages.join()).toMatch(/the last Supabase poll \(2 h ago\) failed: the Supabase access token is invalid or expired \(401\)/);
    expect(never.messages.join()).not.toMatch(/not configured/);
    // an older good snapshot is still shown, and the failure said
    const old = syncCheck(configured, [backup(3)], snapshot({ takenAt: new Date(NOW - 30 * H).toISOString(), backups: [{ id: 1, status: 'COMPLETED', insertedAt: new Date(NOW - 31 * H).toISOString(), physical: false }] }), NOW, failed);
    expect(old.messages.join()).toMatch(/failed: .*; the managed layer is shown as of the poll 30 h ago/);
    expect(syncCheck(configured, [backup(3)], null, NOW).messages.join()).toMatch(/has not been polled yet/);
    expect(syncCheck(config, [backup(3)], null, NOW).messages.join()).toMatch(/it is not configured \(set SUPABASE_PROJECT_REF and SUPABASE_ACCESS_TOKEN/);
  });
});
