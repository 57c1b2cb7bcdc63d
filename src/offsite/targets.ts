/**
 * The configured offsite targets, opened: the implicit `supabase` one (SUPABASE_URL and
 * SUPABASE_SERVICE_ROLE_KEY) and each of `offsite.targets`. Opening sends nothing.
 */
import type { Config, ResolvedOffsiteTarget } from '../config/schema.js';
import { silenceSdkNotices } from '../config/environment.js';
import { HbError } from '../domain/errors.js';
import type { OffsiteTarget } from './target.js';

/** Opens one resolved target (loads its SDK on first use). */
export async function openTarget(t: ResolvedOffsiteTarget): Promise<OffsiteTarget> {
  if (t.type === 's3') {
    silenceSdkNotices();
    const { S3Target } = await import('./s3-target.js');
    return S3Target.open({
      name: t.name,
      ...(t.endpoint ? { endpoint: t.endpoint } : {}),
      region: t.region,
      bucket: t.bucket,
      prefix: t.prefix,
      ...(t.forcePathStyle === undefined ? {} : { forcePathStyle: t.forcePathStyle }),
      credentials: t.credentials,
      credentialsFrom: `${t.accessKeyIdEnv} and ${t.secretAccessKeyEnv}`,
      createBucket: t.createBucket,
    });
  }
  const { SupabaseTarget } = await import('./supabase-target.js');
  return SupabaseTarget.open({ url: t.url, key: t.key, bucket: t.bucket, prefix: t.prefix }, { name: t.name });
}

/** Every configured target, opened, in configuration order (`supabase` first). */
export async function openTargets(config: Config): Promise<OffsiteTarget[]> {
  return Promise.all(config.offsiteTargets.map(openTarget));
}

/** The hint for "no offsite target is configured". */
export const NO_TARGET_HINT = 'set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (a "supabase" target), or add offsite.targets to the configuration (see the README, "Offsite copies")';

/**
 * The target called `name`, or — without a name — the first configured one.
 * @throws HbError `offsite-off` when none is configured, `offsite-target-unknown` for a wrong name
 */
export function configuredTarget(config: Config, name?: string): ResolvedOffsiteTarget {
  const all = config.offsiteTargets;
  if (all.length === 0) throw new HbError('offsite-off', 'no offsite target is configured', NO_TARGET_HINT);
  if (name === undefined) return all[0]!;
  const t = all.find((x) => x.name === name);
  if (!t) {
    throw new HbError('offsite-target-unknown', `no offsite target is called "${name}"`, `the configured targets are: ${all.map((x) => x.name).join(', ')} (see \`hybrid-backup config\`)`);
  }
  return t;
}
