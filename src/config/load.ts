/**
 * Loading the configuration: defaults ← config file ← environment (and systemd credentials).
 * The only module that reads the environment for options.
 *
 * @throws HbError `config-invalid`, `config-file-missing` or `config-file-unreadable` (exit 2),
 *   with one line naming the key, what is wrong and the fix.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { HbError } from '../domain/errors.js';
import { redactor } from '../util/redact.js';
import { cronZone } from '../util/time-zone.js';
import { readEnvironment } from './environment.js';
import { Cron } from 'croner';
import { type Config, configSchema, DEFAULT_SCHEDULES, ENV_BINDINGS, type EnvBinding, type ResolvedOffsiteTarget, type ScheduleName } from './schema.js';

export const DEFAULT_CONFIG_FILE = 'config/hybrid-backup.json';

export interface LoadOptions {
  /** `--config <file>`; wins over HYBRID_BACKUP_CONFIG. */
  configFile?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Instead of /etc/hybrid-backup/hybrid-backup.json (tests). */
  systemFile?: string;
  /** Instead of where this program is installed (tests). */
  installDir?: string;
}

type Json = Record<string, unknown>;

function getAt(obj: unknown, p: readonly PropertyKey[]): unknown {
  let cur = obj;
  for (const k of p) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}

function setAt(obj: Json, p: readonly string[], value: unknown): void {
  let cur = obj;
  for (const k of p.slice(0, -1)) {
    if (cur[k] === null || typeof cur[k] !== 'object' || Array.isArray(cur[k])) cur[k] = {};
    cur = cur[k] as Json;
  }
  cur[p[p.length - 1]!] = value;
}

/** Walks the schema to the option at `p`, unwrapping defaults and optionals. */
function schemaAt(p: readonly PropertyKey[]): z.ZodType | undefined {
  let cur: any = configSchema;
  const unwrap = (s: any) => {
    while (s?._zod?.def?.innerType && ['default', 'prefault', 'optional', 'nullable'].includes(s._zod.def.type)) s = s._zod.def.innerType;
    return s;
  };
  for (const k of p) {
    cur = unwrap(cur);
    if (!cur?.shape) return undefined;
    cur = cur.shape[k as string];
  }
  return cur;
}

function describeOption(p: readonly PropertyKey[]): { description?: string; default?: unknown } {
  const s: any = schemaAt(p);
  if (!s) return {};
  const def = s._zod?.def?.type === 'default' ? s._zod.def.defaultValue : undefined;
  return { description: s.description, default: def };
}

function credential(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const dir = env.CREDENTIALS_DIRECTORY;
  if (!dir) return undefined;
  const file = path.join(dir, name);
  if (!existsSync(file)) return undefined;
  return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
}

function formatValue(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();

  // 1. The file: named explicitly (must exist), or the first that exists in the fixed order.
  const named = opts.configFile ?? (env.HYBRID_BACKUP_CONFIG || undefined);
  const searched = configCandidates(opts, cwd).map((p) => ({ path: p, found: existsSync(p) }));
  const file = named ? path.resolve(cwd, named) : (searched.find((c) => c.found)?.path ?? path.resolve(cwd, DEFAULT_CONFIG_FILE));
  let fileData: Json = {};
  let fileUsed: string | null = null;
  if (existsSync(file)) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new HbError('config-file-unreadable', `cannot read config file ${file}: ${(e as Error).message}`, 'check the file\'s permissions');
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('the top level must be an object {…}');
      fileData = parsed as Json;
    } catch (e) {
      throw new HbError('config-file-unreadable', `config file ${file} is not valid JSON: ${(e as Error).message}`, 'fix the JSON syntax; config/hybrid-backup.example.json shows every option');
    }
    fileUsed = file;
  } else if (named) {
    const via = opts.configFile ? '--config' : 'HYBRID_BACKUP_CONFIG';
    throw new HbError('config-file-missing', `config file ${file} (from ${via}) does not exist`, 'check the path, or copy config/hybrid-backup.example.json there');
  }

  // 2. Secrets may not come from the file.
  for (const b of ENV_BINDINGS) {
    if (b.secret && getAt(fileData, b.path) !== undefined) {
      throw new HbError(
        'config-invalid',
        `invalid configuration: ${b.path.join('.')} in ${file} holds a secret, and secrets are never read from the config file`,
        `remove it from the file and set ${b.env} in the environment (or a systemd credential named ${b.env})`,
      );
    }
  }

  // 3. The environment (empty means unset), then systemd credentials for secrets.
  const merged: Json = structuredClone(fileData);
  const fromEnv = new Map<string, EnvBinding>();
  for (const b of ENV_BINDINGS) {
    const v = env[b.env] || (b.secret ? credential(env, b.env) : undefined);
    if (v) {
      setAt(merged, b.path, v);
      fromEnv.set(b.path.join('.'), b);
      if (b.connection) redactor.addConnectionSecret(v);
      else if (b.secret) redactor.addSecret(v);
    }
  }

  // 4. Validate and apply defaults.
  const result = configSchema.safeParse(merged, { reportInput: true });
  if (!result.success) {
    const issue = result.error.issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      const parent = issue.path.map(String);
      const known = Object.keys((schemaAt(issue.path) as any)?._zod?.def?.innerType?.shape ?? (schemaAt(issue.path) as any)?.shape ?? {});
      const key = [...parent, issue.keys[0]].join('.');
      throw new HbError(
        'config-invalid',
        `invalid configuration: unknown key ${key} in ${file}`,
        `remove it or use one of${parent.length ? ` ${parent.join('.')}.` : ' '}{${known.join(', ')}}`,
      );
    }
    const key = issue.path.map(String).join('.');
    const binding = fromEnv.get(key);
    const source = binding ? `${binding.env} (environment)` : `${key} in ${file}`;
    const value = getAt(merged, issue.path);
    const shown = binding?.secret ? '' : ` is ${formatValue(value)}:`;
    const problem = issue.message.replace(/^Invalid (input|option): /, '').replace(/^[A-Z]/, (c) => c.toLowerCase());
    const d = describeOption(issue.path);
    const fix = d.description ? `${key} is ${d.description}${d.default !== undefined ? `; default ${formatValue(d.default)}` : ''}` : undefined;
    throw new HbError('config-invalid', `invalid configuration: ${source}${shown} ${problem}`, fix);
  }
  const raw = result.data;

  // 5. Schedules that never fire are refused; daily jobs that fire less often are warned about.
  const warnings = checkSchedules(raw.schedules, raw.timezone, (job) => `schedules.${job} in ${fileUsed && getAt(fileData, ['schedules', job]) !== undefined ? fileUsed : 'the defaults'}`);

  // 6. Offsite targets, their credentials from the environment (or systemd credentials) only.
  const offsiteTargets: ResolvedOffsiteTarget[] = [];
  if (raw.offsite.enabled) {
    if (raw.supabase.url && raw.supabase.serviceRoleKey) {
      offsiteTargets.push({ name: 'supabase', type: 'supabase-storage', url: raw.supabase.url, bucket: raw.offsite.bucket, prefix: raw.offsite.prefix, key: raw.supabase.serviceRoleKey });
    }
    raw.offsite.targets.forEach((t, i) => {
      const secretFrom = (name: string, what: string): string => {
        const v = env[name] || credential(env, name);
        if (!v) {
          throw new HbError(
            'config-invalid',
            `invalid configuration: offsite.targets[${i}] ("${t.name}") needs ${what} in ${name}, which is not set`,
            `set ${name} in the service's environment (or a systemd credential named ${name}); secrets never come from the config file`,
          );
        }
        redactor.addSecret(v);
        return v;
      };
      if (t.type === 's3') offsiteTargets.push({ ...t, credentials: { accessKeyId: secretFrom(t.accessKeyIdEnv, 'an access key id'), secretAccessKey: secretFrom(t.secretAccessKeyEnv, 'a secret access key') } });
      else offsiteTargets.push({ name: t.name, type: 'supabase-storage', url: t.url, bucket: t.bucket, prefix: t.prefix, key: secretFrom(t.keyEnv, 'a service-role key') });
    });
  }

  // 6b. Storage files: on, off, or on when the database turns out to have storage.objects.
  const storageCreds = !!(raw.supabase.url && raw.supabase.serviceRoleKey);
  if (raw.storage.enabled === true && !storageCreds) {
    throw new HbError(
      'config-invalid',
      `invalid configuration: storage.enabled is true but ${raw.supabase.url ? 'SUPABASE_SERVICE_ROLE_KEY' : 'SUPABASE_URL'} is not set`,
      'set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY in the service\'s environment, or set storage.enabled to false',
    );
  }
  const storageCapture: Config['storageCapture'] = raw.storage.enabled === false || !storageCreds ? 'off' : raw.storage.enabled === true ? 'on' : 'auto';

  // 7. Resolve derived values.
  const backupDir = path.resolve(cwd, raw.backupDir);
  const identityCredential = env.CREDENTIALS_DIRECTORY ? path.join(env.CREDENTIALS_DIRECTORY, 'age-identity') : null;
  const ageIdentityFile = env.HYBRID_BACKUP_AGE_IDENTITY_FILE
    ? path.resolve(cwd, env.HYBRID_BACKUP_AGE_IDENTITY_FILE)
    : identityCredential && existsSync(identityCredential)
      ? identityCredential
      : null;
  return {
    ...raw,
    offsiteTargets,
    storageCapture,
    ageIdentityFile,
    environment: readEnvironment(env),
    backupDir,
    socket: { ...raw.socket, path: path.resolve(cwd, raw.socket.path ?? path.join(backupDir, 'hybrid-backup.sock')) },
    source: { file: fileUsed, via: named ? (opts.configFile ? '--config' : 'HYBRID_BACKUP_CONFIG') : fileUsed ? 'search' : 'defaults', searched: named ? [] : searched, fileKeys: leafKeys(fileData), envKeys: [...fromEnv.keys()] },
    warnings,
  };
}

function leafKeys(o: Json, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) => (v && typeof v === 'object' && !Array.isArray(v) ? leafKeys(v as Json, `${prefix}${k}.`) : [`${prefix}${k}`]));
}

/** Where the program is installed: the directory holding its package.json (two or three up from this module). */
function installDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const up of ['../..', '../../..']) {
    const d = path.resolve(here, up);
    if (existsSync(path.join(d, 'package.json')) && existsSync(path.join(d, 'config'))) return d;
  }
  return path.resolve(here, '../..');
}

/** The system-wide file a systemd install uses. */
export const SYSTEM_CONFIG_FILE = '/etc/hybrid-backup/hybrid-backup.json';

/**
 * The files looked for when none is named (--config, HYBRID_BACKUP_CONFIG), in order: the systemd
 * install's, the install directory's, then the working directory's — so the CLI finds the
 * service's configuration wherever it runs from (an NRPE check, a migration script).
 */
export function configCandidates(opts: Pick<LoadOptions, 'systemFile' | 'installDir'>, cwd: string): string[] {
  const list = [opts.systemFile ?? SYSTEM_CONFIG_FILE, path.join(opts.installDir ?? installDir(), DEFAULT_CONFIG_FILE), path.resolve(cwd, DEFAULT_CONFIG_FILE)];
  return [...new Set(list)];
}

/** Jobs meant to run every day: their schedule must fire at least daily. */
const DAILY_JOBS: readonly ScheduleName[] = ['backup', 'prune', 'monitor'];
const DAY_MS = 86_400_000;

/**
 * Every schedule must fire within the next 366 days (`0 3 31 2 *` never does, `0 3 29 2 *` only in
 * a leap year); a daily job whose expression leaves more than a day (and a DST hour) between two
 * runs gets a warning.
 * @throws HbError `config-invalid`
 */
export function checkSchedules(schedules: Record<ScheduleName, string>, timezone: string, where: (job: string) => string, now = new Date()): string[] {
  const warnings: string[] = [];
  for (const [job, expr] of Object.entries(schedules) as Array<[ScheduleName, string]>) {
    // The defaults fire as meant in every zone (a test checks them); only what the operator wrote
    // is checked here, at every start of the CLI.
    if (expr === DEFAULT_SCHEDULES[job]) continue;
    const c = new Cron(expr, { ...cronZone(timezone), paused: true });
    try {
      const runs = c.nextRuns(8, now);
      const first = runs[0];
      if (!first || first.getTime() - now.getTime() > 366 * DAY_MS) {
        throw new HbError(
          'config-invalid',
          `invalid configuration: ${where(job)} is ${JSON.stringify(expr)}: it never fires (no run in the next 366 days${first ? `; the next is ${first.toISOString().slice(0, 10)}` : ''})`,
          `fix the day and month fields (minute hour day-of-month month day-of-week); the default is "${DEFAULT_SCHEDULES[job]}"`,
        );
      }
      if (DAILY_JOBS.includes(job)) {
        const gap = Math.max(0, ...runs.slice(1).map((r, i) => r.getTime() - runs[i]!.getTime()));
        if (runs.length < 2 || gap > DAY_MS + 3_600_000) {
          warnings.push(`schedules.${job} is ${JSON.stringify(expr)}: the ${job} job is meant to run daily, but this fires ${runs.length < 2 ? 'only once' : `up to ${Math.round(gap / 3_600_000)} hours apart`}`);
        }
      }
    } finally {
      c.stop();
    }
  }
  return warnings;
}
