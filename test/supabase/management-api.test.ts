/**
 * The managed layer against a fake Management API whose every reply validates against
 * Supabase's published schema: the scenarios of a real project's life, and the token's secrecy.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { CLI, cliEnv, readLedger, removeDir, runCli, tempDir } from '../helpers/cli.js';
import { closedPort } from '../helpers/webhook-receiver.js';
import { createHash } from 'node:crypto';
import { CONTRACT, CONTRACT_SHA256, contractErrors, dailyProject, FakeManagementApi, pitrProject, REF, TOKEN } from '../helpers/fake-supabase.js';

let api: FakeManagementApi;
const dirs: string[] = [];
const outputs: string[] = [];

beforeAll(async () => {
  api = await new FakeManagementApi().start();
});
afterEach(() => {
  expect(api.violations, 'every reply of the fake must validate against the contract').toEqual([]);
});
afterAll(async () => {
  await api.stop();
  // The token never appears in any output, log, ledger row or report.
  for (const d of dirs) {
    for (const f of readdirSync(d, { recursive: true }) as string[]) {
      const p = path.join(d, f);
      if (statSync(p).isFile()) expect(readFileSync(p).toString('latin1'), p).not.toContain(TOKEN);
    }
  }
  for (const o of outputs) expect(o).not.toContain(TOKEN);
  dirs.forEach(removeDir);
});

function setup(config: Record<string, unknown> = {}) {
  const dir = tempDir('hbsb');
  dirs.push(dir);
  writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ supabase: { requestTimeoutSeconds: 1, maxRetries: 2, ...config } }));
  const backupDir = path.join(dir, 'b');
  const env = { BACKUP_DIR: backupDir, HYBRID_BACKUP_CONFIG: path.join(dir, 'c.json'), SUPABASE_API_URL: api.url, SUPABASE_PROJECT_REF: REF, SUPABASE_ACCESS_TOKEN: TOKEN };
  return { dir, backupDir, env };
}

async function cli(args: string[], env: Record<string, string>) {
  const r = await runCli(args, env);
  outputs.push(r.stdout, r.stderr);
  return r;
}

async function status(env: Record<string, string>) {
  const r = await cli(['supabase-status', '--json'], env);
  return { ...r, doc: JSON.parse(r.stdout) };
}

describe('the contract', () => {
  it('is Supabase\'s published schema, unchanged', () => {
    expect(createHash('sha256').update(readFileSync(CONTRACT)).digest('hex')).toBe(CONTRACT_SHA256);
  });
});

describe('supabase-status', () => {
  it('a PITR project: the window, WAL-G, the add-on; the poll recorded', async () => {
    const s = setup();
    api.state = pitrProject();
    const r = await status(s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.doc).toMatchObject({ configured: true, pitrEnabled: true, walgEnabled: true, region: 'eu-central-1', addons: { pitr: 'pitr_7', compute: 'ci_small' } });
    expect(Date.parse(r.doc.physical.latest)).toBeGreaterThan(Date.now() - 5 * 60_000);
    expect(Date.parse(r.doc.physical.earliest)).toBeLessThan(Date.now() - 6 * 86_400_000);
    expect(r.doc.backups).toHaveLength(3);
    expect(r.doc.latestBackupAt).toBe(r.doc.backups[0].insertedAt);
    expect(readLedger(s.backupDir, `select job, trigger, status from runs`)).toEqual([{ job: 'supabase-poll', trigger: 'cli', status: 'ok' }]);
    expect(readLedger(s.backupDir, `select ok, pitr_enabled, project_status from supabase_snapshots`)).toEqual([{ ok: 1, pitr_enabled: 1, project_status: 'ACTIVE_HEALTHY' }]);
    const human = await cli(['supabase-status'], s.env);
    expect(human.stdout).toMatch(/point-in-time recovery {2}on \(7 days\): restorable from/);
    const log = readFileSync(path.join(s.backupDir, 'supabase-backup.log'), 'utf8');
    expect(log).toMatch(/PITR on, restorable/);
    // every request carried the token
    expect(api.requests.every((q) => q.authorization === `Bearer ${TOKEN}`)).toBe(true);
  });

  it('a daily-backup project: the newest completed backup and the schedule', async () => {
    const s = setup();
    api.state = dailyProject();
    const r = await status(s.env);
    expect(r.exitCode).toBe(0);
    expect(r.doc).toMatchObject({ configured: true, pitrEnabled: false, physical: { earliest: null, latest: null }, schedule: { scheduleFor: '04:00:00' }, failedBackups: 0 });
    expect(r.doc.latestBackupAt).toBe(api.state.backups[0]!.inserted_at);
  });

  it('a FAILED newest backup: reported, and the newest completed one found behind it', async () => {
    const s = setup();
    api.state = dailyProject();
    api.state.backups.unshift({ id: 99, status: 'FAILED', inserted_at: new Date(Date.now() - 3600_000).toISOString(), is_physical_backup: false });
    const r = await status(s.env);
    expect(r.doc.failedBackups).toBe(1);
    expect(r.doc.backups[0]).toMatchObject({ status: 'FAILED', id: 99 });
    expect(r.doc.latestBackupAt).toBe(api.state.backups[1]!.inserted_at);
    expect((await cli(['supabase-status'], s.env)).stdout).toMatch(/FAILED +\d{4}-\d\d-\d\d .*\(id 99\)/);
  });

  it('an empty backup list, physical_backup_data {}, a missing id and an unknown status are all accepted', async () => {
    const s = setup();
    api.state = { ...dailyProject(), backups: [] };
    let r = await status(s.env);
    expect(r.exitCode).toBe(0);
    expect(r.doc).toMatchObject({ backups: [], latestBackupAt: null, physical: { earliest: null, latest: null } });
    // an older response without ids, with statuses this program does not act on
    const older = {
      region: 'eu-central-1',
      walg_enabled: true,
      pitr_enabled: false,
      physical_backup_data: {},
      backups: [
        { status: 'COMPLETED', inserted_at: '2026-11-20T04:00:00Z', is_physical_backup: false },
        { status: 'PENDING', inserted_at: '2026-11-21T04:00:00Z', is_physical_backup: false },
        { status: 'ARCHIVED', inserted_at: '2026-11-19T04:00:00Z', is_physical_backup: false },
      ],
    };
    expect(contractErrors('V1BackupsResponse', older).join()).toMatch(/must have required property 'id'/);
    api.queue('GET /database/backups', { status: 200, json: older, schema: 'legacy-V1BackupsResponse' });
    r = await status(s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.doc.backups).toEqual([
      { id: null, status: 'PENDING', insertedAt: '2026-11-21T04:00:00.000Z', physical: false },
      { id: null, status: 'COMPLETED', insertedAt: '2026-11-20T04:00:00.000Z', physical: false },
      { id: null, status: 'ARCHIVED', insertedAt: '2026-11-19T04:00:00.000Z', physical: false },
    ]);
    expect(r.doc.latestBackupAt).toBe('2026-11-20T04:00:00.000Z');
  });

  it.each([
    [401, 'supabase-unauthorized', /access token is invalid or expired \(401\)/, /create a new access token/],
    [403, 'supabase-forbidden', /may not read the backups list \(project abcdefghijklmnopqrst, 403; it needs the backups_read permission\)/, /read access to the project's database backups: give a fine-grained \(scoped\) access token the backups_read permission \(an OAuth app's token: the database:read scope\)/],
    [404, 'supabase-not-found', /no project abcdefghijklmnopqrst is visible to this token \(404\)/, /check SUPABASE_PROJECT_REF/],
  ])('%i: no retry, error %s with its hint; the failure recorded, not a crash', async (code, errCode, message, hint) => {
    const s = setup();
    api.state = dailyProject();
    const before = api.count('GET', '/database/backups');
    api.queue('GET /database/backups', { status: code, raw: '{"message":"nope"}' });
    const r = await status(s.env);
    expect(r.exitCode).toBe(1);
    expect(r.doc.error).toMatchObject({ code: errCode });
    expect(r.doc.error.message).toMatch(message);
    expect(r.doc.error.hint).toMatch(hint);
    expect(api.count('GET', '/database/backups') - before).toBe(1);
    expect(readLedger(s.backupDir, `select status, error_code from runs`)).toEqual([{ status: 'failed', error_code: errCode }]);
    expect(readLedger(s.backupDir, `select ok, error_code from supabase_snapshots`)).toEqual([{ ok: 0, error_code: errCode }]);
  });

  describe('403: the hint names what that endpoint needs, as the contract states it', () => {
    /** The operation's `security` → `fga_permissions` (scoped tokens) and `x-oauth-scope` (OAuth apps), read from the contract. */
    const contract = JSON.parse(readFileSync(CONTRACT, 'utf8'));
    function needs(method: string, suffix: string): { permission: string; oauthScope: string | null } {
      const op = contract.paths[`/v1/projects/{ref}${suffix}`][method.toLowerCase()];
      const permissions = (op.security as Array<Record<string, string[]>>).flatMap((s) => s.fga_permissions ?? []);
      expect(permissions, `${method} ${suffix}`).toHaveLength(1);
      return { permission: permissions[0]!, oauthScope: op['x-oauth-scope'] ?? null };
    }
    function expectHintFor(error: { message: string; hint: string }, method: string, suffix: string) {
      const { permission, oauthScope } = needs(method, suffix);
      expect(error.message).toContain(`403; it needs the ${permission} permission`);
      expect(error.hint).toContain(`give a fine-grained (scoped) access token the ${permission} permission`);
      if (oauthScope) expect(error.hint).toContain(`(an OAuth app's token: the ${oauthScope} scope)`);
      else expect(error.hint).not.toMatch(/scope\)/);
      // no other endpoint's permission is named
      for (const other of ['backups_read', 'backups_write', 'project_admin_read', 'infra_add_ons_read'].filter((p) => p !== permission)) expect(`${error.message} ${error.hint}`).not.toContain(other);
    }

    it('GET the project: project_admin_read, the poll fails without a retry', async () => {
      const s = setup();
      api.state = dailyProject();
      const before = api.count('GET', '');
      api.queue('GET ', { status: 403, raw: '{"message":"Forbidden action"}' });
      const r = await status(s.env);
      expect(r.exitCode).toBe(1);
      expect(r.doc.error).toMatchObject({ code: 'supabase-forbidden', message: expect.stringMatching(/^the access token may not read the project \(project abcdefghijklmnopqrst, 403/) });
      expectHintFor(r.doc.error, 'GET', '');
      expect(r.doc.error.hint).toMatch(/this needs read access to the project:/);
      expect(api.count('GET', '') - before).toBe(1);
    });

    it('GET the add-ons: infra_add_ons_read (no OAuth scope stated), a note on an otherwise good poll', async () => {
      const s = setup();
      api.state = dailyProject();
      api.queue('GET /billing/addons', { status: 403, raw: '{"message":"Forbidden action"}' });
      const r = await status(s.env);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.doc.addons).toBeNull();
      const note = (r.doc.notes as string[]).find((n) => n.startsWith('add-ons not readable: '));
      expect(note).toBe('add-ons not readable: the access token may not read the add-ons (project abcdefghijklmnopqrst, 403; it needs the infra_add_ons_read permission)');
      expect(needs('GET', '/billing/addons')).toEqual({ permission: 'infra_add_ons_read', oauthScope: null });
    });

    it('PATCH the backup schedule (supabase-config --apply-schedule): backups_write, recorded as a failed change', async () => {
      const s = setup();
      writeFileSync(s.env.HYBRID_BACKUP_CONFIG, JSON.stringify({ timezone: 'UTC', schedules: { backup: '0 3 * * *' }, supabase: { requestTimeoutSeconds: 1, maxRetries: 2 } }));
      api.state = dailyProject();
      api.queue('PATCH /database/backups/schedule', { status: 403, raw: '{"message":"Forbidden action"}' });
      const r = await cli(['supabase-config', '--apply-schedule', '--json'], s.env);
      expect(r.exitCode).toBe(1);
      const { error } = JSON.parse(r.stdout);
      expect(error).toMatchObject({ code: 'supabase-forbidden', message: expect.stringMatching(/^the access token may not change the backup schedule /) });
      expectHintFor(error, 'PATCH', '/database/backups/schedule');
      expect(error.hint).toMatch(/this needs write access to the project's database backups:/);
      expect(api.state.scheduleFor).toBe('04:00:00');
      expect(readLedger(s.backupDir, `select status, error_code from runs where job = 'supabase-schedule'`)).toEqual([{ status: 'failed', error_code: 'supabase-forbidden' }]);
    });

    it('POST a point-in-time restore: backups_write', async () => {
      const s = setup();
      api.state = pitrProject();
      const before = api.count('POST', '/database/backups/restore-pitr');
      api.queue('POST /database/backups/restore-pitr', { status: 403, raw: '{"message":"Forbidden action"}' });
      const r = await cli(['supabase-restore-pitr', '--to', new Date(Date.now() - 3_600_000).toISOString(), '--confirm', REF, '--json'], s.env);
      expect(r.exitCode).toBe(1);
      const { error } = JSON.parse(r.stdout);
      expect(error).toMatchObject({ code: 'supabase-forbidden', message: expect.stringMatching(/^the access token may not start a point-in-time restore /) });
      expectHintFor(error, 'POST', '/database/backups/restore-pitr');
      expect(api.count('POST', '/database/backups/restore-pitr') - before).toBe(1);
    });
  });

  it('a wrong token is refused by the API the same way', async () => {
    const s = setup();
    const r = await status({ ...s.env, SUPABASE_ACCESS_TOKEN: 'sbp_wrongwrongwrongwrongwrongwrongwrongwrong' });
    expect(r.doc.error.code).toBe('supabase-unauthorized');
    expect(r.stdout).not.toContain('sbp_wrongwrong');
  });

  it('429 with Retry-After: waits as told, then succeeds', async () => {
    const s = setup();
    api.state = dailyProject();
    api.queue('GET /database/backups', { status: 429, raw: '{"message":"slow down"}', headers: { 'retry-after': '1' } });
    const t0 = Date.now();
    const r = await status(s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    const calls = api.requests.filter((q) => q.path.endsWith('/database/backups')).slice(-2);
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(950);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(readFileSync(path.join(s.backupDir, 'supabase-backup.log'), 'utf8')).toMatch(/429.*retry 1 in 1\.0s/);
  });

  it('500 then success: retried with backoff', async () => {
    const s = setup();
    api.state = dailyProject();
    const before = api.count('GET', '');
    api.queue('GET ', { status: 500, raw: '{"message":"Failed to retrieve project"}' }, { status: 503, raw: '' });
    const r = await status(s.env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(api.count('GET', '') - before).toBe(3);
  });

  it('5xx every time: gives up after the retries with a clear error', async () => {
    const s = setup();
    api.queue('GET /database/backups', { status: 500, raw: '' }, { status: 500, raw: '' }, { status: 500, raw: '' });
    const r = await status(s.env);
    expect(r.exitCode).toBe(1);
    expect(r.doc.error).toMatchObject({ code: 'supabase-unavailable' });
    expect(r.doc.error.message).toMatch(/failed GET \/v1\/projects\/abcdefghijklmnopqrst\/database\/backups with 500 .*after 3 attempts/);
  });

  it('a hung request times out (and is retried), then fails with supabase-timeout', async () => {
    const s = setup({ maxRetries: 1 });
    api.queue('GET /database/backups', { hang: true }, { hang: true });
    const t0 = Date.now();
    const r = await status(s.env);
    expect(r.exitCode).toBe(1);
    expect(r.doc.error).toMatchObject({ code: 'supabase-timeout' });
    expect(r.doc.error.message).toMatch(/did not answer GET .* within 1s \(2 attempts\)/);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('on a terminal, every retry is said as it happens; an unreachable API is named, a blocked port explained', async () => {
    const s = setup({ maxRetries: 2 });
    api.queue('GET /database/backups', { status: 503, raw: '' }, { status: 503, raw: '' });
    const cmd = ['node', CLI, 'supabase-status'].map((a) => `'${a}'`).join(' ');
    const t = await execa('script', ['-qec', cmd, '/dev/null'], { env: cliEnv(s.env), extendEnv: false, reject: false });
    expect(t.exitCode, String(t.stdout)).toBe(0);
    expect(String(t.stdout)).toMatch(/Management API \/v1\/projects\/abcdefghijklmnopqrst\/database\/backups: 503 Service Unavailable; retrying in \d+ s \(attempt 2 of 3\)/);
    expect(String(t.stdout)).toMatch(/retrying in \d+ s \(attempt 3 of 3\)/);
    outputs.push(String(t.stdout));
    // nothing listens: the retries are said, then what failed
    const closed = await closedPort();
    const down = await runCli(['supabase-status'], { ...s.env, SUPABASE_API_URL: `http://127.0.0.1:${closed}` });
    expect(down.exitCode).toBe(1);
    expect(down.stderr).toMatch(/nothing accepts connections at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\); retrying in/);
    expect(down.stderr).toMatch(/cannot reach the Management API at .*: nothing accepts connections/);
    // a port fetch refuses to use: said at once, no retries
    const blocked = await runCli(['supabase-status'], { ...s.env, SUPABASE_API_URL: 'http://127.0.0.1:6000' });
    expect(blocked.exitCode).toBe(1);
    expect(blocked.stderr).toMatch(/the port 6000 in SUPABASE_API_URL is one that HTTP clients refuse to use/);
    expect(blocked.stderr).not.toMatch(/bad port|retrying/);
    // a port that cannot be one is a configuration error
    const bad = await runCli(['supabase-status'], { ...s.env, SUPABASE_API_URL: 'https://api.supabase.com:99999' });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/SUPABASE_API_URL .* is not an http\(s\) URL/);
  });

  it('malformed JSON: supabase-bad-response, not a crash', async () => {
    const s = setup();
    api.queue('GET /database/backups', { status: 200, raw: '{"region": "eu", "backups": [' });
    const r = await status(s.env);
    expect(r.exitCode).toBe(1);
    expect(r.doc.error.code).toBe('supabase-bad-response');
    expect(r.doc.error.message).toMatch(/not JSON/);
  });

  it('not configured is a state: configured false, exit 0, the poll recorded', async () => {
    const s = setup();
    const r = await status({ ...s.env, SUPABASE_ACCESS_TOKEN: '', SUPABASE_PROJECT_REF: '' });
    expect(r.exitCode).toBe(0);
    expect(r.doc).toMatchObject({ configured: false, pitrEnabled: null, backups: [], notes: ['not configured: set SUPABASE_PROJECT_REF and SUPABASE_ACCESS_TOKEN'] });
    const human = await cli(['supabase-status'], { ...s.env, SUPABASE_ACCESS_TOKEN: '' });
    // said once: what is missing, and where to read on
    expect(human.stdout.trim()).toBe('managed layer (Supabase): not configured: set SUPABASE_ACCESS_TOKEN\n  (see README: the managed layer)');
  });
});
