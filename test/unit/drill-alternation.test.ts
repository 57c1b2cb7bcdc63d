/** The weekly drill alternates the local file and the offsite copies, the targets in turn. */
import { afterAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/schema.js';
import type { RunContext } from '../../src/context.js';
import type { DrillResult } from '../../src/domain/types.js';
import { nextDrillSource } from '../../src/jobs/registry.js';
import { Ledger } from '../../src/ledger/ledger.js';
import { removeDir, tempDir } from '../helpers/cli.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach(removeDir));

function ctxWith(targets: string[], encryption: { recipients?: string[]; identity?: string | null } = {}): { ctx: RunContext; drilled: (source: string) => void } {
  const dir = tempDir('hbd');
  dirs.push(dir);
  const ledger = Ledger.open(dir);
  ledger.recordBackup({
    runId: null, kind: 'daily', description: null, file: '/b/x.sql', bytes: 10, sha256: 'ab'.repeat(32), compression: 'none', profile: 'full', status: 'ok',
    createdAt: '2026-11-01T03:00:00.000Z', finishedAt: '2026-11-01T03:00:01.000Z', durationMs: 1000, database: 'app', source: null, sourceSystemId: null,
    serverVersion: '15.20', pgDumpVersion: '15.20', tables: { 'public.t': 3 }, error: null,
  });
  const config = { offsiteTargets: targets.map((name) => ({ name })), encryption: { ageRecipients: encryption.recipients ?? [], local: false }, ageIdentityFile: encryption.identity ?? null } as unknown as Config;
  const result = (source: string): DrillResult => ({ backupId: 1, ok: true, tables: 1, rowsChecked: 1, durationMs: 1, mismatches: [], scratchDatabase: 'x', amcheck: 'off', fidelity: { objects: 0, tablesDigested: 0, differences: [] }, source });
  let n = 0;
  const drilled = (source: string) => ledger.recordDrill(ledger.startRun('restore-drill', 'schedule').id, new Date(Date.UTC(2026, 10, 1 + n++)).toISOString(), result(source));
  return { ctx: { config, ledger } as unknown as RunContext, drilled };
}

describe('nextDrillSource', () => {
  it('starts local, then alternates local and offsite, taking the targets in turn', () => {
    const { ctx, drilled } = ctxWith(['supabase', 'b2']);
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      const next = nextDrillSource(ctx);
      const source = next.offsite ? `offsite:${next.target}` : 'local';
      seen.push(source);
      drilled(source);
    }
    expect(seen).toEqual(['local', 'offsite:supabase', 'local', 'offsite:b2', 'local', 'offsite:supabase']);
  });

  it('stays local without targets, and when the copies are encrypted and the private key is not on this server', () => {
    const none = ctxWith([]);
    none.drilled('local');
    expect(nextDrillSource(none.ctx)).toEqual({ offsite: false });
    const keyElsewhere = ctxWith(['b2'], { recipients: ['age1x'] });
    keyElsewhere.drilled('local');
    expect(nextDrillSource(keyElsewhere.ctx)).toEqual({ offsite: false });
    const keyHere = ctxWith(['b2'], { recipients: ['age1x'], identity: '/etc/hybrid-backup/age-key.txt' });
    keyHere.drilled('local');
    expect(nextDrillSource(keyHere.ctx)).toEqual({ offsite: true, target: 'b2' });
  });
});
