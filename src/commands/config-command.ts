/** `config`: which configuration file is in force, and the effective values (secrets masked). */
import { z } from 'zod';
import type { LibpqEnv } from '../config/environment.js';
import { ENV_BINDINGS } from '../config/schema.js';
import { parseConnInfo, safeUrl } from '../pg/connection.js';
import { table } from '../util/format.js';
import { defineCommand } from './command.js';

export interface ConfigDoc {
  /** The file in force, or null (defaults and the environment only). */
  file: string | null;
  via: string;
  /** The files looked for, in order, when none was named. */
  searched: Array<{ path: string; found: boolean }>;
  /** Every option, flattened, with its effective value (secrets masked) and where it came from. */
  values: Array<{ key: string; value: unknown; source: 'default' | 'file' | 'environment' }>;
  warnings: string[];
}

const MASK = '(set, hidden)';

function flatten(prefix: string, v: unknown, out: Array<[string, unknown]>): void {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flatten(prefix ? `${prefix}.${k}` : k, x, out);
  } else out.push([prefix, v]);
}

/** A secret shown safely: a connection string without its password, a URL by its host, a key not at all. */
function masked(key: string, value: unknown, libpq: LibpqEnv): unknown {
  const b = ENV_BINDINGS.find((x) => x.path.join('.') === key);
  if (!b?.secret || value === undefined || value === null) return value;
  if (b.connection) {
    try {
      return safeUrl(parseConnInfo(String(value), b.env, libpq));
    } catch {
      return MASK;
    }
  }
  if (key === 'alerts.webhookUrl') {
    try {
      return `${new URL(String(value)).origin}/… (path hidden)`;
    } catch {
      return MASK;
    }
  }
  return MASK;
}

export const configCommand = defineCommand({
  name: 'config',
  summary: 'which configuration file is in force (looked for in: --config, HYBRID_BACKUP_CONFIG, /etc/hybrid-backup/hybrid-backup.json, the install directory\'s config/, the working directory\'s config/) and every effective value, with where it came from; secrets masked',
  configOnly: true,
  args: z.object({}),
  async run(ctx): Promise<ConfigDoc> {
    const c = ctx.config;
    const flat: Array<[string, unknown]> = [];
    // The resolved targets carry their credentials: shown by where they come from, never by value.
    const { source: _s, warnings: _w, offsiteTargets, storageCapture, environment: _e, ...options } = c;
    flatten('', options, flat);
    flat.push([
      'offsiteTargets (in force)',
      offsiteTargets.map((t) =>
        t.type === 's3'
          ? { name: t.name, type: t.type, bucket: t.bucket, prefix: t.prefix, endpoint: t.endpoint ?? 'AWS', credentials: `${t.accessKeyIdEnv} and ${t.secretAccessKeyEnv} ${MASK}` }
          : { name: t.name, type: t.type, url: t.url, bucket: t.bucket, prefix: t.prefix, credentials: `service-role key ${MASK}` },
      ),
    ]);
    flat.push([
      'storage (in force)',
      storageCapture === 'off'
        ? `off${c.storage.enabled === false ? ' (storage.enabled is false)' : ' (SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY are not both set)'}`
        : `${storageCapture === 'on' ? 'on' : 'on when the database has storage.objects'}: buckets ${c.storage.buckets.length ? c.storage.buckets.join(', ') : '(all)'}, ${c.storage.concurrency} at a time, from ${c.supabase.url}`,
    ]);
    const fromEnv = new Set(c.source.envKeys ?? []);
    const inFile = new Set(c.source.fileKeys ?? []);
    return {
      file: c.source.file,
      via: c.source.via,
      searched: c.source.searched,
      values: flat.map(([key, value]) => ({ key, value: masked(key, value, c.environment.libpq), source: fromEnv.has(key) ? 'environment' : inFile.has(key) ? 'file' : 'default' })),
      warnings: c.warnings,
    };
  },
  render(doc) {
    const head = doc.file
      ? `configuration: ${doc.file} (${doc.via === 'search' ? 'the first found of the places looked in' : `named by ${doc.via}`})`
      : 'configuration: no file found; defaults and the environment only';
    const lines = [head];
    if (doc.searched.length) lines.push(`looked in, in order: ${doc.searched.map((s) => `${s.path}${s.found ? '' : ' (absent)'}`).join(', ')}`);
    lines.push('', table(['KEY', 'VALUE', 'FROM'], doc.values.map((v) => [v.key, v.value === undefined ? '-' : typeof v.value === 'string' ? v.value : JSON.stringify(v.value), v.source])));
    for (const w of doc.warnings) lines.push(`warning: ${w}`);
    return lines.join('\n');
  },
});
