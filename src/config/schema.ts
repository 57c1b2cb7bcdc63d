/**
 * The one declaration of every option: its type, default and description (zod).
 *
 * Sources, later winning: these defaults, then the config file, then the environment
 * ({@link ENV_BINDINGS}). Options marked secret may come only from the environment or systemd
 * credentials, never from the config file.
 */
import { Cron } from 'croner';
import { readlinkSync } from 'node:fs';
import { z } from 'zod';
import { isUtc } from '../util/time-zone.js';
import { parseRecipient } from '../crypto/age-keys.js';
import type { Environment } from './environment.js';

// zod compiles a parser for each object schema on its first use (new Function): a gain for a schema
// parsed thousands of times, a loss for this program, which parses each a few times per process —
// the configuration at every CLI start (8 ms of it).
z.config({ jitless: true });

/**
 * The machine's zone, as Intl resolves it (TZ, else /etc/localtime). A machine on UTC — TZ a UTC
 * name, or no TZ and /etc/localtime a link to one — is answered without Intl (its first use costs
 * ~25 ms), as Intl answers it: `UTC`.
 */
function systemTimeZone(): string {
  const tz = process.env.TZ?.replace(/^:/, '');
  if (tz !== undefined && tz !== '' && isUtc(tz)) return 'UTC';
  if (!tz) {
    try {
      const zone = readlinkSync('/etc/localtime').split('/zoneinfo/')[1];
      if (zone !== undefined && isUtc(zone)) return 'UTC';
    } catch {
      // not a link: Intl knows
    }
  }
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

function isTimeZone(tz: string): boolean {
  if (isUtc(tz)) return true;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

function isHttpUrl(s: string): boolean {
  if (!/^https?:\/\/[^\s]+$/i.test(s)) return false;
  try {
    new URL(s);
    return true;
  } catch {
    return false; // e.g. a port above 65535
  }
}

function isCron(expr: string): boolean {
  try {
    new Cron(expr, { paused: true }).stop();
    return true;
  } catch {
    return false;
  }
}

const cron = (def: string, what: string) =>
  z
    .string()
    .refine(isCron, { message: 'is not a cron expression (five fields: minute hour day-of-month month day-of-week)' })
    .default(def)
    .describe(`a cron expression for ${what}, in the configured timezone, e.g. "${def}"`);

const dbUrl = (what: string) =>
  z
    .string()
    .min(1)
    .optional()
    .describe(`${what} (a postgres:// connection URL or libpq key=value string)`);

const httpUrl = (what: string) =>
  z
    .string()
    .refine(isHttpUrl, { message: 'is not an http(s) URL' })
    .optional()
    .describe(what);

function isAgeRecipient(s: string): boolean {
  try {
    parseRecipient(s);
    return true;
  } catch {
    return false;
  }
}

const targetName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,31}$/, { message: 'is not a target name (lowercase letters, digits and hyphens, up to 32)' });
const folder = z
  .string()
  .regex(/^([A-Za-z0-9._-]+\/)*$/, { message: 'is not a folder path ending in / (or empty)' })
  .default('');
const envName = z.string().regex(/^[A-Z_][A-Z0-9_]*$/, { message: 'is not an environment variable name' });

/** One offsite destination besides the implicit `supabase` one. */
const offsiteTarget = z.discriminatedUnion('type', [
  z.strictObject({
    name: targetName,
    type: z.literal('s3'),
    endpoint: z
      .string()
      .refine(isHttpUrl, { message: 'is not an http(s) URL' })
      .optional()
      .describe('the S3 endpoint (R2, B2, MinIO, Supabase Storage\'s S3 endpoint); unset: AWS'),
    region: z.string().min(1).default('us-east-1'),
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { message: 'is not an S3 bucket name' }),
    prefix: folder,
    forcePathStyle: z.boolean().optional().describe('path-style URLs (endpoint/bucket/key); unset: on with an endpoint (MinIO, Ceph, Supabase need it), off for AWS'),
    accessKeyIdEnv: envName.default('AWS_ACCESS_KEY_ID'),
    secretAccessKeyEnv: envName.default('AWS_SECRET_ACCESS_KEY'),
    createBucket: z.boolean().default(false),
  }),
  z.strictObject({
    name: targetName,
    type: z.literal('supabase-storage'),
    url: z.string().refine(isHttpUrl, { message: 'is not an http(s) URL' }).describe('the project URL, https://<ref>.supabase.co'),
    bucket: z.string().regex(/^[a-z0-9][a-z0-9._-]{1,62}$/, { message: 'is not a bucket name' }),
    prefix: folder,
    keyEnv: envName.describe('the environment variable holding that project\'s service-role key'),
  }),
]);

/** The default schedule of each job. */
export const DEFAULT_SCHEDULES = {
  backup: '0 3 * * *',
  prune: '30 3 * * *',
  monitor: '0 7 * * *',
  'supabase-poll': '0 */6 * * *',
  'restore-drill': '0 5 * * 0',
} as const;

export const configSchema = z.strictObject({
  databaseUrl: dbUrl('the database to back up; libpq defaults (PGHOST, PGUSER, …) when unset'),
  backupDir: z
    .string()
    .min(1)
    .default('./backups')
    .describe('the directory for backups, the ledger, logs and reports (relative to the working directory)'),
  timezone: z
    .string()
    .refine(isTimeZone, { message: 'is not an IANA time zone' })
    .default(systemTimeZone)
    .describe('the IANA time zone schedules are read in and times shown in, e.g. "Europe/Berlin"'),

  log: z
    .strictObject({
      level: z
        .enum(['error', 'warn', 'info', 'debug'])
        .default('info')
        .describe('the level of the JSON log files in the backup directory: error, warn, info or debug'),
    })
    .prefault({}),

  dump: z
    .strictObject({
      profile: z
        .enum(['full', 'supabase'])
        .optional()
        .describe('"full" (the whole database) or "supabase" (without the platform-managed schemas)'),
      compression: z
        .enum(['none', 'gzip'])
        .default('none')
        .describe('"none" (plain .sql files) or "gzip" (.sql.gz files)'),
      gzipLevel: z.int().min(1).max(9).default(6).describe('the gzip level, 1-9, when compression is gzip'),
      pgBinDir: z
        .string()
        .min(1)
        .optional()
        .describe('a directory holding the pg_dump and psql to use instead of searching /usr/lib/postgresql/<major>/bin'),
      lockWaitSeconds: z
        .int()
        .min(0)
        .default(1800)
        .describe('how many seconds a backup waits for another backup in the same directory before failing'),
      freeSpaceFactor: z
        .number()
        .min(1)
        .default(1.2)
        .describe('the factor: a backup is refused when free space is below the last backup\'s size times it'),
      connectTimeoutSeconds: z
        .int()
        .min(1)
        .max(600)
        .default(15)
        .describe('how many seconds to wait for the database server to answer a connection'),
      fingerprint: z
        .boolean()
        .default(true)
        .describe('whether each backup records the catalog fingerprint its restore drills compare (objects, privileges, policies, comments, …)'),
    })
    .prefault({}),

  retention: z
    .strictObject({
      days: z.int().min(1).default(30).describe('the number of days to keep daily and manual backups'),
      preChangeDays: z.int().min(1).default(30).describe('the number of days to keep pre-change backups'),
      minKeep: z
        .int()
        .min(1)
        .default(7)
        .describe('the number of newest ok backups never pruned, whatever their age (at least 1)'),
      keepWeekly: z.int().min(0).default(0).describe('the number of recent weeks whose newest ok backup is also kept'),
      keepMonthly: z.int().min(0).default(0).describe('the number of recent months whose newest ok backup is also kept'),
    })
    .prefault({}),

  schedules: z
    .strictObject({
      backup: cron(DEFAULT_SCHEDULES.backup, 'the daily local backup'),
      prune: cron(DEFAULT_SCHEDULES.prune, 'the daily retention run (after the backup)'),
      monitor: cron(DEFAULT_SCHEDULES.monitor, 'the daily hybrid monitor'),
      'supabase-poll': cron(DEFAULT_SCHEDULES['supabase-poll'], 'polling Supabase\'s managed backups'),
      'restore-drill': cron(DEFAULT_SCHEDULES['restore-drill'], 'the weekly restore drill'),
    })
    .prefault({}),

  socket: z
    .strictObject({
      path: z
        .string()
        .min(1)
        .optional()
        .describe('the path of the control socket (default <backupDir>/hybrid-backup.sock)'),
      group: z
        .string()
        .min(1)
        .optional()
        .describe('a group whose members may use the control socket (mode 0660); unset: only the service\'s user (0600)'),
      idleTimeoutSeconds: z.int().min(1).default(60).describe('seconds after which a silent control client is disconnected'),
      requestTimeoutSeconds: z.int().min(1).max(600).default(10).describe('seconds a control client has to send a whole request line, however its bytes trickle in'),
      replyTimeoutSeconds: z
        .int()
        .min(5)
        .default(120)
        .describe('seconds the CLI waits for any sign of life from the service (a reply, progress, or its heartbeat every 5 s) before it says the service is not answering'),
      maxConnections: z.int().min(1).default(64).describe('the most control clients connected at once'),
    })
    .prefault({}),

  service: z
    .strictObject({
      shutdownGraceSeconds: z
        .int()
        .min(0)
        .default(60)
        .describe('seconds a stopping service lets running work finish before aborting it'),
    })
    .prefault({}),

  supabase: z
    .strictObject({
      enabled: z.boolean().default(true).describe('whether to watch Supabase\'s managed backups (false: the managed layer is off)'),
      projectRef: z
        .string()
        .regex(/^[a-z]{20}$/, { message: 'is not a Supabase project ref (20 lowercase letters)' })
        .optional()
        .describe('the project ref, the 20-letter id in the dashboard URL (supabase.com/dashboard/project/<ref>)'),
      accessToken: z.string().min(1).optional().describe('a Supabase personal access token for the Management API'),
      apiUrl: z
        .string()
        .refine(isHttpUrl, { message: 'is not an http(s) URL' })
        .default('https://api.supabase.com')
        .describe('the Management API base URL'),
      url: httpUrl('the project URL (https://<ref>.supabase.co), for Storage'),
      serviceRoleKey: z.string().min(1).optional().describe('the service-role key, for Storage'),
      requestTimeoutSeconds: z.int().min(1).max(300).default(15).describe('how many seconds one Management API request may take'),
      maxRetries: z.int().min(0).max(10).default(3).describe('how many times a Management API request is retried after a 429, a 5xx or a timeout'),
      policy: z
        .strictObject({
          requirePitr: z.boolean().default(false).describe('whether point-in-time recovery must be enabled'),
          minPitrDays: z.int().min(1).max(28).default(7).describe('the fewest days of point-in-time recovery acceptable, when PITR is required or on'),
          maxBackupAgeHours: z
            .number()
            .positive()
            .default(26)
            .describe('the oldest the newest managed backup (or, with PITR, the newest restore point) may be, in hours'),
          requireHealthy: z.boolean().default(true).describe('whether the project must report ACTIVE_HEALTHY'),
        })
        .prefault({}),
    })
    .prefault({}),

  storage: z
    .strictObject({
      enabled: z
        .boolean()
        .optional()
        .describe('whether each backup also captures the files of Supabase Storage; unset: on when SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set and the database has storage.objects'),
      buckets: z
        .array(z.string().min(1))
        .default([])
        .refine((bs) => new Set(bs).size === bs.length, { message: 'names a bucket twice' })
        .describe('the Storage buckets to capture, e.g. ["avatars", "documents"]; empty: every bucket'),
      concurrency: z.int().min(1).max(32).default(4).describe('how many Storage files are fetched or uploaded at a time (1 to 32)'),
      gcGraceMinutes: z.number().min(0).default(60).describe('minutes a Storage file newly written to BACKUP_DIR/storage is kept by retention even when no backup references it yet'),
    })
    .prefault({}),

  restoreTest: z
    .strictObject({
      enabled: z.boolean().default(true).describe('whether the service runs the weekly restore drill (schedules.restore-drill)'),
      databaseUrl: dbUrl('a server where scratch databases may be created and dropped for restore drills; unset: each drill starts its own throwaway PostgreSQL'),
      timeoutMinutes: z.number().positive().default(60).describe('how many minutes a restore drill may take before it is stopped'),
      amcheck: z.boolean().default(false).describe('whether a drill also runs pg_amcheck on the restored database'),
    })
    .prefault({}),

  offsite: z
    .strictObject({
      enabled: z.boolean().default(true).describe('whether to keep a copy of each backup in Supabase Storage when SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are set'),
      bucket: z
        .string()
        .regex(/^[a-z0-9][a-z0-9._-]{1,62}$/, { message: 'is not a bucket name (lowercase letters, digits, dots, hyphens, underscores)' })
        .default('hybrid-backups')
        .describe('the private Storage bucket for the copies (created if missing)'),
      prefix: z
        .string()
        .regex(/^([A-Za-z0-9._-]+\/)*$/, { message: 'is not a folder path ending in / (or empty)' })
        .default('')
        .describe('a folder inside the bucket, ending in "/", e.g. "prod/"'),
      timeoutMinutes: z.number().positive().default(60).describe('how many minutes one upload may take before it is stopped (and retried at the next run)'),
      targets: z
        .array(offsiteTarget)
        .default([])
        .refine((ts) => new Set(ts.map((t) => t.name)).size === ts.length, { message: 'has two targets of the same name' })
        .refine((ts) => !ts.some((t) => t.name === 'supabase' && t.type === 's3'), { message: 'names an s3 target "supabase", the name of the Supabase Storage target' })
        .describe('more places for offsite copies, each {name, type: "s3" | "supabase-storage", …}; with SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY set, a "supabase" target is there too'),
    })
    .prefault({}),

  encryption: z
    .strictObject({
      ageRecipients: z
        .array(z.string().refine(isAgeRecipient, { message: 'is not an age X25519 recipient (a public key age1…; age-keygen -y key.txt prints it)' }))
        .default([])
        .describe('public keys (age1…) every offsite copy is encrypted to; the private key is needed only to restore (HYBRID_BACKUP_AGE_IDENTITY_FILE)'),
      local: z.boolean().default(false).describe('whether the local backup files are encrypted too (.age); needs ageRecipients'),
    })
    .prefault({})
    .refine((e) => !e.local || e.ageRecipients.length > 0, { message: 'sets local: true without any ageRecipients to encrypt to' }),

  alerts: z
    .strictObject({
      webhookUrl: httpUrl('the URL alerts are POSTed to'),
      timeoutSeconds: z.int().min(1).max(60).default(10).describe('how many seconds one alert POST may take'),
      retries: z.int().min(0).max(10).default(3).describe('how many times a failed alert POST is retried, with backoff'),
      exitWaitSeconds: z.number().min(0).max(60).default(5).describe('how long a command waits at exit for alerts still being sent, before giving them up'),
    })
    .prefault({}),

  monitor: z
    .strictObject({
      localWarnHours: z.number().positive().default(26).describe('hours after which the newest ok local backup is a warning'),
      localCritHours: z.number().positive().default(50).describe('hours after which the newest ok local backup is critical'),
      sizeDropRatio: z.number().min(0).max(1).default(0.5).describe('a backup smaller than this fraction of the previous one is a warning'),
      integritySamples: z.int().min(0).default(2).describe('how many older backups the monitor re-hashes each day, in rotation, besides the newest'),
      drillMaxAgeDays: z.number().positive().default(8).describe('days after which the newest restore drill is a warning'),
      pollWarnHours: z.number().positive().default(7).describe('hours after which the last Supabase poll is a warning'),
      managedWarnHours: z.number().positive().default(26).describe('hours after which the newest managed backup is a warning'),
      managedCritHours: z.number().positive().default(50).describe('hours after which the newest managed backup is critical'),
      pitrWarnMinutes: z.number().positive().default(60).describe('minutes after which the newest PITR restore point is a warning'),
    })
    .prefault({}),

  metrics: z
    .strictObject({
      path: z
        .string()
        .min(1)
        .optional()
        .describe('where to write the Prometheus metrics (default <backupDir>/metrics.prom), e.g. /var/lib/node_exporter/textfile_collector/hybrid_backup.prom'),
    })
    .prefault({}),

  syncCheck: z
    .strictObject({
      maxGapHours: z.number().positive().default(26).describe('restore points further apart than this many hours, in every layer, are a gap'),
    })
    .prefault({}),
});

/** The configuration as read from the sources, before derived values are resolved. */
export type RawConfig = z.output<typeof configSchema>;

/** The name of a scheduled job, as in `schedules.<name>`. */
export type ScheduleName = keyof RawConfig['schedules'];

/**
 * An offsite destination with its credentials resolved from the environment (never from the file):
 * the implicit `supabase` target (SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY, offsite.bucket/prefix)
 * and each of offsite.targets.
 */
export type ResolvedOffsiteTarget =
  | (Extract<RawConfig['offsite']['targets'][number], { type: 's3' }> & { credentials: { accessKeyId: string; secretAccessKey: string } })
  | { name: string; type: 'supabase-storage'; url: string; bucket: string; prefix: string; key: string };

/** The configuration the program runs with: paths absolute, derived values resolved. */
export interface Config extends Omit<RawConfig, 'socket'> {
  /** Every offsite destination, credentials resolved; empty when offsite copies are off. */
  offsiteTargets: ResolvedOffsiteTarget[];
  /**
   * Whether backups capture the Storage files: `on` (storage.enabled true), `auto` (unset, with
   * SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY: on when the database has storage.objects), `off`.
   */
  storageCapture: 'on' | 'auto' | 'off';
  /**
   * Where the age identity (private key) is read from to restore or drill encrypted backups:
   * HYBRID_BACKUP_AGE_IDENTITY_FILE, or the systemd credential `age-identity`; null when neither
   * is there. The file is read only when it is needed.
   */
  ageIdentityFile: string | null;
  /** libpq's variables, PATH and the like, read once with the configuration (see environment.ts). */
  environment: Environment;
  socket: RawConfig['socket'] & { path: string };
  /** Where this configuration came from, for messages and `config`. */
  source: {
    file: string | null;
    /** How the file was chosen: named by --config or HYBRID_BACKUP_CONFIG, found by the search, or none (defaults). */
    via: '--config' | 'HYBRID_BACKUP_CONFIG' | 'search' | 'defaults';
    /** The files looked for, in order, when none was named. */
    searched: Array<{ path: string; found: boolean }>;
    /** The option keys the file sets (dotted). */
    fileKeys?: string[];
    /** The option keys the environment (or a systemd credential) sets (dotted). */
    envKeys?: string[];
  };
  /** Things the configuration allows but the operator should hear about (a daily job that is not daily). */
  warnings: string[];
}

/** An environment variable bound to an option. */
export interface EnvBinding {
  env: string;
  path: readonly string[];
  /** Secrets may only come from the environment (or systemd credentials). */
  secret: boolean;
  /** A connection string: only its password is secret (the rest is shown, e.g. in logs). */
  connection?: boolean;
}

export const ENV_BINDINGS: readonly EnvBinding[] = [
  { env: 'DATABASE_URL', path: ['databaseUrl'], secret: true, connection: true },
  { env: 'BACKUP_DIR', path: ['backupDir'], secret: false },
  { env: 'HYBRID_BACKUP_SOCKET', path: ['socket', 'path'], secret: false },
  { env: 'SUPABASE_PROJECT_REF', path: ['supabase', 'projectRef'], secret: false },
  { env: 'SUPABASE_ACCESS_TOKEN', path: ['supabase', 'accessToken'], secret: true },
  { env: 'SUPABASE_API_URL', path: ['supabase', 'apiUrl'], secret: false },
  { env: 'SUPABASE_URL', path: ['supabase', 'url'], secret: false },
  { env: 'SUPABASE_SERVICE_ROLE_KEY', path: ['supabase', 'serviceRoleKey'], secret: true },
  { env: 'RESTORE_TEST_DATABASE_URL', path: ['restoreTest', 'databaseUrl'], secret: true, connection: true },
  { env: 'ALERT_WEBHOOK_URL', path: ['alerts', 'webhookUrl'], secret: true },
];
