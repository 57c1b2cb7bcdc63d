import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { checkSchedules, loadConfig } from '../../src/config/load.js';
import { configSchema, DEFAULT_SCHEDULES, ENV_BINDINGS } from '../../src/config/schema.js';
import { HbError } from '../../src/domain/errors.js';
import { readLedger, removeDir, ROOT, runCli, tempDir } from '../helpers/cli.js';

const dirs: string[] = [];
function project(config?: unknown): string {
  const d = tempDir('hbcfg');
  dirs.push(d);
  if (config !== undefined) {
    mkdirSync(path.join(d, 'config'));
    writeFileSync(path.join(d, 'config/hybrid-backup.json'), typeof config === 'string' ? config : JSON.stringify(config));
  }
  return d;
}
afterAll(() => dirs.forEach(removeDir));

function loadError(cwd: string, env: NodeJS.ProcessEnv = {}, configFile?: string): HbError {
  try {
    loadConfig({ cwd, env, configFile });
  } catch (e) {
    return e as HbError;
  }
  throw new Error('expected loadConfig to fail');
}

describe('configuration', () => {
  it('has the SPEC defaults', () => {
    const cwd = project();
    const c = loadConfig({ cwd, env: {} });
    expect(c.retention).toMatchObject({ days: 30, preChangeDays: 30, minKeep: 7 });
    expect(c.dump).toMatchObject({ compression: 'none' });
    expect(c.dump.profile).toBeUndefined(); // decided per connection: supabase for Supabase hosts
    expect(c.supabase.enabled).toBe(true);
    expect(c.supabase.policy.requirePitr).toBe(false);
    expect(c.supabase.apiUrl).toBe('https://api.supabase.com');
    expect(c.backupDir).toBe(path.join(cwd, 'backups'));
    expect(c.socket.path).toBe(path.join(cwd, 'backups', 'hybrid-backup.sock'));
    expect(Object.keys(c.schedules).sort()).toEqual(['backup', 'monitor', 'prune', 'restore-drill', 'supabase-poll']);
  });

  it('merges a partial file over the defaults, and the environment over the file', () => {
    const cwd = project({ retention: { days: 14 }, dump: { compression: 'gzip' }, backupDir: 'from-file' });
    const c = loadConfig({ cwd, env: { BACKUP_DIR: '/srv/from-env', HYBRID_BACKUP_SOCKET: '/run/hb.sock' } });
    expect(c.retention).toMatchObject({ days: 14, preChangeDays: 30, minKeep: 7 });
    expect(c.dump.compression).toBe('gzip');
    expect(c.backupDir).toBe('/srv/from-env');
    expect(c.socket.path).toBe('/run/hb.sock');
  });

  it('reads --config, then HYBRID_BACKUP_CONFIG', () => {
    const cwd = project();
    writeFileSync(path.join(cwd, 'a.json'), JSON.stringify({ retention: { minKeep: 3 } }));
    writeFileSync(path.join(cwd, 'b.json'), JSON.stringify({ retention: { minKeep: 4 } }));
    expect(loadConfig({ cwd, env: { HYBRID_BACKUP_CONFIG: 'b.json' }, configFile: 'a.json' }).retention.minKeep).toBe(3);
    expect(loadConfig({ cwd, env: { HYBRID_BACKUP_CONFIG: 'b.json' } }).retention.minKeep).toBe(4);
    expect(loadError(cwd, {}, 'missing.json').code).toBe('config-file-missing');
  });

  it('takes secrets from systemd credentials when the environment has none', () => {
    const cwd = project();
    const creds = path.join(cwd, 'creds');
    mkdirSync(creds);
    writeFileSync(path.join(creds, 'DATABASE_URL'), 'postgresql://u:credpass@h/db\n');
    expect(loadConfig({ cwd, env: { CREDENTIALS_DIRECTORY: creds } }).databaseUrl).toBe('postgresql://u:credpass@h/db');
  });

  it.each([
    [{ retention: { days: 'thirty' } }, /retention\.days in .* is "thirty": expected number, received string/, /retention\.days is the number of days to keep/],
    [{ retention: { minKeep: 0 } }, /retention\.minKeep .* is 0: too small/, /default 7/],
    [{ dump: { compression: 'zstd' } }, /dump\.compression .* is "zstd": expected one of "none"\|"gzip"/, /plain \.sql files/],
    [{ schedules: { backup: 'every day' } }, /schedules\.backup .* is "every day": is not a cron expression/, /cron expression/],
    [{ timezone: 'Mars/Olympus' }, /timezone .* is "Mars\/Olympus": is not an IANA time zone/, /Europe\/Berlin/],
    [{ retention: { dayz: 3 } }, /unknown key retention\.dayz/, /days, preChangeDays, minKeep/],
    [{ supabase: { accessToken: 'sbp_x' } }, /supabase\.accessToken .* holds a secret/, /SUPABASE_ACCESS_TOKEN/],
  ])('rejects %j naming the key, the problem and the fix', (cfg, message, hint) => {
    const e = loadError(project(cfg));
    expect(e.code).toMatch(/^config-/);
    expect(e.exitCode).toBe(2);
    expect(e.message).toMatch(message);
    expect(e.hint).toMatch(hint);
  });

  it('names the environment variable when a value from it is bad, without echoing secrets', () => {
    const e = loadError(project(), { SUPABASE_PROJECT_REF: 'NOT A REF' });
    expect(e.message).toMatch(/SUPABASE_PROJECT_REF \(environment\)/);
    const w = loadError(project(), { ALERT_WEBHOOK_URL: 'not-a-url-secret-part' });
    expect(w.message).toMatch(/ALERT_WEBHOOK_URL/);
    expect(w.message).not.toMatch(/secret-part/);
  });

  it('`config` shows the targets in force by where their credentials come from, never the credentials', async () => {
    const d = project({ offsite: { targets: [{ name: 'b2', type: 's3', bucket: 'acme-backups', accessKeyIdEnv: 'B2_KEY_ID', secretAccessKeyEnv: 'B2_KEY' }] } });
    const env = { SUPABASE_URL: 'https://abcdefghijklmnopqrst.supabase.co', SUPABASE_SERVICE_ROLE_KEY: 'srk-secret-value', B2_KEY_ID: 'key-id-value', B2_KEY: 'b2-secret-value' };
    for (const args of [['config'], ['config', '--json']]) {
      const r = await runCli(args, env, { cwd: d });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/B2_KEY_ID and B2_KEY \(set, hidden\)/);
      for (const secret of ['srk-secret-value', 'key-id-value', 'b2-secret-value']) expect(r.stdout + r.stderr).not.toContain(secret);
    }
  });

  it('resolves offsite targets with their credentials from the environment, and refuses bad ones naming the field', () => {
    const s3 = { name: 'b2', type: 's3', endpoint: 'https://s3.eu-central-003.backblazeb2.com', bucket: 'acme-backups', prefix: 'prod/', accessKeyIdEnv: 'B2_KEY_ID', secretAccessKeyEnv: 'B2_KEY' };
    const recipient = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
    const env = { SUPABASE_URL: 'https://abcdefghijklmnopqrst.supabase.co', SUPABASE_SERVICE_ROLE_KEY: 'srk-secret', B2_KEY_ID: 'kid', B2_KEY: 'b2-secret-value' };
    const c = loadConfig({ cwd: project({ offsite: { targets: [s3] }, encryption: { ageRecipients: [recipient] } }), env });
    expect(c.offsiteTargets.map((t) => [t.name, t.type])).toEqual([['supabase', 'supabase-storage'], ['b2', 's3']]);
    expect(c.offsiteTargets[1]).toMatchObject({ bucket: 'acme-backups', prefix: 'prod/', region: 'us-east-1', credentials: { accessKeyId: 'kid', secretAccessKey: 'b2-secret-value' } });
    expect(c.encryption).toEqual({ ageRecipients: [recipient], local: false });
    expect(loadConfig({ cwd: project({ offsite: { enabled: false, targets: [s3] } }), env }).offsiteTargets).toEqual([]);
    const missing = loadError(project({ offsite: { targets: [s3] } }), { B2_KEY_ID: 'kid' });
    expect(missing.message).toMatch(/offsite\.targets\[0\] \("b2"\) needs a secret access key in B2_KEY, which is not set/);
    const cases: Array<[unknown, RegExp]> = [
      [{ offsite: { targets: [s3, s3] } }, /offsite\.targets.*two targets of the same name/],
      [{ offsite: { targets: [{ ...s3, bucket: 'Bad_Bucket' }] } }, /offsite\.targets\.0\.bucket.*not an S3 bucket name/],
      [{ offsite: { targets: [{ ...s3, type: 'ftp' }] } }, /offsite\.targets\.0/],
      [{ offsite: { targets: [{ ...s3, prefix: '/abs' }] } }, /offsite\.targets\.0\.prefix/],
      [{ encryption: { ageRecipients: ['age1notakey'] } }, /encryption\.ageRecipients\.0.*not an age X25519 recipient/],
      [{ encryption: { local: true } }, /encryption.*local: true without any ageRecipients/],
    ];
    for (const [config, message] of cases) {
      const e = loadError(project(config), env);
      expect(e.code).toBe('config-invalid');
      expect(e.message).toMatch(message);
      expect(e.message).not.toMatch(/b2-secret-value|srk-secret/);
    }
  });

  it('finds the age identity in HYBRID_BACKUP_AGE_IDENTITY_FILE, or the systemd credential age-identity', () => {
    const d = project();
    expect(loadConfig({ cwd: d, env: {} }).ageIdentityFile).toBeNull();
    expect(loadConfig({ cwd: d, env: { HYBRID_BACKUP_AGE_IDENTITY_FILE: 'keys/k.txt' } }).ageIdentityFile).toBe(path.join(d, 'keys/k.txt'));
    const creds = path.join(d, 'creds');
    mkdirSync(creds);
    expect(loadConfig({ cwd: d, env: { CREDENTIALS_DIRECTORY: creds } }).ageIdentityFile).toBeNull();
    writeFileSync(path.join(creds, 'age-identity'), 'AGE-SECRET-KEY-1…\n');
    expect(loadConfig({ cwd: d, env: { CREDENTIALS_DIRECTORY: creds } }).ageIdentityFile).toBe(path.join(creds, 'age-identity'));
  });

  it('rejects a file that is not JSON', () => {
    expect(loadError(project('{ "retention": ')).code).toBe('config-file-unreadable');
  });

  it('stops the CLI with exit 2 and one line before doing anything', async () => {
    const cwd = project({ retention: { days: -1 } });
    const backupDir = path.join(cwd, 'b');
    const r = await runCli(['list'], { BACKUP_DIR: backupDir }, { cwd });
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/retention\.days .* is -1/);
    expect(r.stderr).toMatch(/hint: retention\.days is/);
    // nothing was done: not even the backup directory was created
    expect(() => readLedger(backupDir, 'select 1')).toThrow();
    const j = await runCli(['list', '--json'], { BACKUP_DIR: backupDir }, { cwd });
    expect(j.exitCode).toBe(2);
    expect(JSON.parse(j.stdout).error).toMatchObject({ code: 'config-invalid' });
  });
});

/** Every option's dotted path, from the schema itself. */
function schemaLeaves(schema: z.ZodType, prefix = ''): string[] {
  let t = schema as unknown as { def: { type: string; innerType?: unknown; shape?: Record<string, z.ZodType> } };
  while (['default', 'optional', 'prefault', 'nullable'].includes(t.def.type)) t = t.def.innerType as typeof t;
  if (t.def.type === 'object') return Object.entries(t.def.shape!).flatMap(([k, v]) => schemaLeaves(v, prefix ? `${prefix}.${k}` : k));
  return [prefix];
}

function jsonLeaves(v: unknown, prefix = ''): string[] {
  if (v && typeof v === 'object' && !Array.isArray(v)) return Object.entries(v).flatMap(([k, x]) => jsonLeaves(x, prefix ? `${prefix}.${k}` : k));
  return [prefix];
}

describe('config/hybrid-backup.example.json', () => {
  const example = readFileSync(path.join(ROOT, 'config/hybrid-backup.example.json'), 'utf8');
  const leaves = schemaLeaves(configSchema);
  const fromEnv = new Set(ENV_BINDINGS.map((b) => b.path.join('.')));

  it('is valid as shipped', () => {
    const cwd = project(example);
    // no zone in it: the README's default, the machine's own zone, applies until one is set
    expect(loadConfig({ cwd, env: {} }).timezone).toBe(Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC');
  });

  it('holds every option that has a default, at its default (secrets and derived paths excepted)', () => {
    const defaults = loadConfig({ cwd: project('{}'), env: {} }) as unknown as Record<string, unknown>;
    const shipped = JSON.parse(example);
    const get = (o: unknown, p: string) => p.split('.').reduce<unknown>((a, k) => (a as Record<string, unknown> | undefined)?.[k], o);
    const expected = leaves.filter((p) => !ENV_BINDINGS.some((b) => b.secret && b.path.join('.') === p) && p !== 'socket.path' && p !== 'timezone' && get(defaults, p) !== undefined);
    expect(jsonLeaves(shipped).sort()).toEqual(expected.sort());
    for (const p of expected) if (p !== 'backupDir') expect(get(shipped, p), p).toEqual(get(defaults, p));
  });

  it('the README names every option, in the configuration table or as an environment variable', () => {
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('## Configuration'));
    const missing = leaves.filter((p) => !fromEnv.has(p) && !table.includes(`\`${p}\``));
    expect(missing).toEqual([]);
  });
  it('refuses a schedule that never fires (exit 2, naming the key), and warns about a daily job that is not daily', async () => {
    const never = loadError(project({ schedules: { backup: '0 3 31 2 *' } }));
    expect(never.code).toBe('config-invalid');
    expect(never.exitCode).toBe(2);
    expect(never.message).toMatch(/schedules\.backup in .*hybrid-backup\.json is "0 3 31 2 \*": it never fires \(no run in the next 366 days\)/);
    expect(never.hint).toMatch(/the default is "0 3 \* \* \*"/);
    // only in a leap year: not within the next 366 days from 2026-11-28, but in 2028
    const leap = loadError(project({ schedules: { prune: '0 3 29 2 *' } }));
    expect(leap.message).toMatch(/schedules\.prune .* it never fires \(no run in the next 366 days; the next is 2028-02-29\)/);
    const weekly = loadConfig({ cwd: project({ schedules: { backup: '0 3 * * 1', monitor: '0 7 * * *' } }), env: {} });
    expect(weekly.warnings).toEqual([expect.stringMatching(/^schedules\.backup is "0 3 \* \* 1": the backup job is meant to run daily, but this fires up to 168 hours apart/)]);
    expect(loadConfig({ cwd: project(), env: {} }).warnings).toEqual([]);
    // the CLI: exit 2 before doing anything; `schedule` shows the warning
    const d = project({ schedules: { backup: '0 3 31 2 *' } });
    const r = await runCli(['list'], { BACKUP_DIR: path.join(d, 'b') }, { cwd: d });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/it never fires/);
    const w = project({ schedules: { backup: '0 3 1 * *' } });
    const sched = await runCli(['schedule'], { BACKUP_DIR: path.join(w, 'b') }, { cwd: w });
    expect(sched.exitCode).toBe(0);
    expect(sched.stdout).toMatch(/warning: schedules\.backup is "0 3 1 \* \*": the backup job is meant to run daily/);
  });
  it('the default schedules fire as meant in every zone (so a load does not check them again)', () => {
    const where = (job: string) => `schedules.${job}`;
    // zones with DST at 02:00/03:00 (the defaults' hours), a half-hour DST, the southern hemisphere, no DST
    for (const zone of ['UTC', 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'America/Santiago', 'Asia/Kolkata', 'Pacific/Chatham']) {
      for (const month of [0, 2, 3, 9, 10]) {
        expect(checkSchedules({ ...DEFAULT_SCHEDULES }, zone, where, new Date(Date.UTC(2027, month, 1))), `${zone}, month ${month + 1}`).toEqual([]);
      }
    }
    // and a load skips only what equals a default: the same expression is still checked in another job
    expect(() => loadConfig({ cwd: project({ schedules: { monitor: DEFAULT_SCHEDULES['restore-drill'] } }), env: {} })).not.toThrow();
    expect(loadConfig({ cwd: project({ schedules: { monitor: DEFAULT_SCHEDULES['restore-drill'] } }), env: {} }).warnings).toEqual([expect.stringMatching(/^schedules\.monitor is "0 5 \* \* 0": the monitor job is meant to run daily/)]);
  });
  it('looks for the file in a fixed order: --config, HYBRID_BACKUP_CONFIG, the system file, the install directory, the working directory', () => {
    const sys = project({ retention: { minKeep: 11 } });
    const inst = project({ retention: { minKeep: 12 } });
    const cwd = project({ retention: { minKeep: 13 } });
    const systemFile = path.join(sys, 'config/hybrid-backup.json');
    expect(loadConfig({ cwd, env: {}, systemFile, installDir: inst }).retention.minKeep).toBe(11);
    expect(loadConfig({ cwd, env: {}, systemFile: '/nonexistent/hb.json', installDir: inst }).retention.minKeep).toBe(12);
    const c = loadConfig({ cwd, env: {}, systemFile: '/nonexistent/hb.json', installDir: '/nonexistent' });
    expect(c.retention.minKeep).toBe(13);
    expect(c.source).toMatchObject({ file: path.join(cwd, 'config/hybrid-backup.json'), via: 'search' });
    expect(c.source.searched.map((x) => x.found)).toEqual([false, false, true]);
    writeFileSync(path.join(cwd, 'named.json'), JSON.stringify({ retention: { minKeep: 14 } }));
    expect(loadConfig({ cwd, env: { HYBRID_BACKUP_CONFIG: 'named.json' }, systemFile, installDir: inst }).retention.minKeep).toBe(14);
  });

  it('`config` says which file is in force and every value with its source, secrets masked', async () => {
    const cwd = project({ retention: { days: 9 } });
    const r = await runCli(['config', '--json'], { DATABASE_URL: 'postgresql://app:Sup3rS3cret@db.example.com:5432/app', SUPABASE_ACCESS_TOKEN: 'sbp_0123456789abcdef0123456789abcdef01234567', ALERT_WEBHOOK_URL: 'https://hooks.example.com/T0/B0/s3cr3t-part' }, { cwd });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/Sup3rS3cret|sbp_0123|s3cr3t-part/);
    const doc = JSON.parse(r.stdout);
    expect(doc.file).toBe(path.join(cwd, 'config/hybrid-backup.json'));
    const v = Object.fromEntries(doc.values.map((x: { key: string }) => [x.key, x]));
    expect(v['retention.days']).toEqual({ key: 'retention.days', value: 9, source: 'file' });
    expect(v['retention.minKeep']).toMatchObject({ value: 7, source: 'default' });
    expect(v.databaseUrl).toMatchObject({ value: 'postgresql://app@db.example.com:5432/app', source: 'environment' });
    expect(v['supabase.accessToken'].value).toBe('(set, hidden)');
    expect(v['alerts.webhookUrl'].value).toBe('https://hooks.example.com/… (path hidden)');
    // it creates nothing: no backup directory appears
    expect(existsSync(path.join(cwd, 'backups'))).toBe(false);
  });
});
