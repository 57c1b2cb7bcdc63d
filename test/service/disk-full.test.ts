/**
 * A full disk is heard: with BACKUP_DIR on a small tmpfs filled to the last byte, the scheduled
 * backup's failure reaches the journal (the daemon's stderr), the webhook and metrics.prom, and
 * the ledger once there is room again; the monitor says the disk is full, critical, even from a
 * command line that cannot open the ledger for writing. Needs root (it mounts a tmpfs).
 */
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { startDaemon, stopDaemon } from '../helpers/daemon.js';
import { createDatabase, dropDatabase, psql } from '../helpers/pg.js';
import { until } from '../helpers/wait.js';
import { Receiver } from '../helpers/webhook-receiver.js';

let db: { name: string; url: string };
let receiver: Receiver;
const dirs: string[] = [];
const mounts: string[] = [];
beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs and needs root (CI runs as root)');
  db = await createDatabase('full');
  await psql(db.url, `create table t (id int primary key, v text); insert into t select g, repeat('x', 200) from generate_series(1, 3000) g;`);
  receiver = await new Receiver().start();
});
afterAll(async () => {
  for (const m of mounts) await execa('umount', ['-l', m], { reject: false });
  await receiver?.stop();
  if (db) await dropDatabase(db.name);
  dirs.forEach(removeDir);
});

/** Fills the filesystem holding `dir` to the last byte with one file; returns its path. */
async function fill(dir: string): Promise<string> {
  const filler = path.join(dir, 'filler');
  await execa('dd', ['if=/dev/zero', `of=${filler}`, 'bs=16k'], { reject: false });
  await execa('dd', ['if=/dev/zero', `of=${filler}-tail`, 'bs=512'], { reject: false });
  return filler;
}

describe('a full disk', () => {
  it('a scheduled backup on a full disk is heard: journal, webhook, metrics, then the ledger; the monitor says critical', async () => {
    const dir = tempDir('hbfull');
    dirs.push(dir);
    const backupDir = path.join(dir, 'b');
    await execa('mkdir', ['-p', backupDir]);
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', backupDir]);
    mounts.push(backupDir);
    const metrics = path.join(dir, 'metrics.prom');
    writeFileSync(
      path.join(dir, 'c.json'),
      JSON.stringify({ timezone: 'UTC', schedules: { backup: '*/2 * * * * *', prune: '0 1 1 1 *', monitor: '0 2 1 1 *' }, metrics: { path: metrics }, supabase: { enabled: false } }),
    );
    const env = { DATABASE_URL: db.url, BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'), HYBRID_BACKUP_SOCKET: path.join(dir, 's.sock'), ALERT_WEBHOOK_URL: receiver.url };
    const d = await startDaemon(env);
    try {
      const filler = await fill(backupDir);
      const alerts = () => receiver.received.filter((r) => r.body.event === 'backup-failed');
      await until(() => alerts().length > 0, 'a backup-failed alert', 30_000);
      expect(alerts()[0]!.body.text).toMatch(/full|ENOSPC/);
      await until(() => /job backup failed: .*(the disk holding .* is full|ENOSPC)/.test(d.output()), 'the failure in the journal');
      await until(() => existsSync(metrics) && /hybrid_backup_job_last_run_ok\{job="backup"\} 0/.test(readFileSync(metrics, 'utf8')), 'metrics.prom to show the failed backup');

      // the monitor from a command line: the disk full, critical, exit 2 (not UNKNOWN)
      const mon = await runCli(['monitor', '--json', '--direct'], env);
      expect(mon.exitCode, mon.stderr).toBe(2);
      const checks = JSON.parse(mon.stdout).checks;
      expect(checks.find((c: any) => c.name === 'disk-space')).toMatchObject({ status: 'critical', message: expect.stringMatching(/is full/) });

      // room again: the failures are in the ledger, with what happened, and backups work again
      unlinkSync(filler);
      unlinkSync(`${filler}-tail`);
      const heardAt = alerts()[0]!.body.at as string;
      await until(() => readLedger(backupDir, `select count(*) as n from runs where job = 'backup' and status = 'failed'`)[0].n > 0, 'the failures written to the ledger once there is room', 30_000);
      await until(() => readLedger(backupDir, `select count(*) as n from backups where status = 'ok' and created_at > ?`, heardAt)[0].n > 0, 'a good backup once there is room', 30_000).catch((e: Error) => {
        throw new Error(`${e.message}; the service said:\n${d.output().slice(-4000)}`);
      });
      const failed = readLedger(backupDir, `select error_code, error_message from runs where job = 'backup' and status = 'failed'`);
      expect(failed.length).toBeGreaterThan(0);
      expect(failed.some((f: any) => /full|ENOSPC/.test(f.error_message))).toBe(true);
      expect(failed.every((f: any) => !/hint: this is a bug/.test(f.error_message))).toBe(true);
    } finally {
      await stopDaemon(d);
    }
  });
});
