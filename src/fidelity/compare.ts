/**
 * A restored database against what its backup recorded: every table's data (byte for byte), every
 * sequence's position (as the dump set it), and the catalog fingerprint (objects, definitions,
 * privileges, policies, RLS, comments, publications, roles). The one comparison the drill and
 * `restore` both report, as differences in words.
 */
import type { BackupEvidence, DumpProfile } from '../domain/types.js';
import type { ConnInfo } from '../pg/connection.js';
import { withClient } from '../pg/server.js';
import { redact } from '../util/redact.js';
import { compareTableData } from './data-digest.js';
import { fingerprintOptions } from './evidence.js';
import { compareFingerprints, fingerprintObjectCount, isFingerprint, readFingerprint } from './fingerprint.js';

export interface Fidelity {
  /** Catalog objects the fingerprint covers. */
  objects: number;
  /** Tables whose data was read back and matched. */
  tablesDigested: number;
  /** Every difference, in words; none means faithful. */
  differences: string[];
  /** What could not be compared, and why. */
  notes?: string[];
}

/** Sequence positions against the dump's: `sequence <name> is at N, was M`. */
async function compareSequences(conn: ConnInfo, expected: BackupEvidence['sequences'], connectTimeoutSeconds: number): Promise<string[]> {
  const names = Object.keys(expected);
  if (names.length === 0) return [];
  return withClient(conn, { connectTimeoutSeconds }, async (c) => {
    const out: string[] = [];
    const read = async (batch: string[]): Promise<Array<{ v: string; c: boolean } | string>> => {
      // The names are as pg_dump wrote them for setval(): qualified, quoted where needed.
      const sql = batch.map((n, j) => `SELECT ${j} AS i, last_value::text AS v, is_called AS c FROM ${n}`).join('\nUNION ALL\n');
      try {
        const rows = (await c.query(sql)).rows as Array<{ i: number; v: string; c: boolean }>;
        return batch.map((_, j) => rows.find((r) => Number(r.i) === j) ?? 'no row');
      } catch (e) {
        if (batch.length === 1) return [`cannot be read back (${redact((e as Error).message)})`];
        return (await Promise.all(batch.map((n) => read([n])))).flat();
      }
    };
    for (let i = 0; i < names.length; i += 100) {
      const batch = names.slice(i, i + 100);
      const got = await read(batch);
      batch.forEach((name, j) => {
        const want = expected[name]!;
        const is = got[j]!;
        const show = (v: string, called: boolean) => `${v}${called ? '' : ' (not yet used)'}`;
        if (typeof is === 'string') out.push(`sequence ${name}: ${is}`);
        else if (is.v !== want.value || is.c !== want.called) out.push(`sequence ${name} is at ${show(is.v, is.c)}, was ${show(want.value, want.called)}`);
      });
    }
    return out;
  });
}

/**
 * Compares the database `inspect` names (a connection that may read everything in it) with the
 * backup's evidence. Never throws for a difference; a step that cannot run is a difference too.
 */
export async function compareWithEvidence(opts: {
  psqlPath: string;
  inspect: ConnInfo;
  evidence: BackupEvidence | null;
  profile: DumpProfile;
  connectTimeoutSeconds: number;
  signal?: AbortSignal;
  /** A drill's own server, without Supabase's supautils: what only it allows is noted, not failed. */
  plainServer?: boolean;
  /** Filled with the rows each digested table gave back, so the caller need not count them again. */
  rowsRead?: Map<string, number>;
}): Promise<Fidelity> {
  const e = opts.evidence;
  const out: Fidelity = { objects: 0, tablesDigested: 0, differences: [] };
  if (!e?.session) {
    out.notes = ['this backup recorded no data digests or catalog fingerprint (taken by an older version): row counts only'];
    return out;
  }
  const data = await compareTableData(opts.psqlPath, opts.inspect, e.digests, e.session, opts.signal);
  out.tablesDigested = data.digested;
  for (const [t, n] of Object.entries(data.rows)) opts.rowsRead?.set(t, n);
  out.differences.push(...data.differences.map((d) => d.message));
  const seq = e.sequences ?? {};
  out.differences.push(...(await compareSequences(opts.inspect, seq, opts.connectTimeoutSeconds)));
  if (isFingerprint(e.fingerprint)) {
    const actual = await withClient(opts.inspect, { connectTimeoutSeconds: opts.connectTimeoutSeconds }, (c) => readFingerprint(c, fingerprintOptions(opts.profile)));
    out.objects = fingerprintObjectCount(e.fingerprint);
    // Sequence positions are judged by what the dump set (above): the fingerprint's own reading
    // of them, a moment before pg_dump's, may differ on a busy database.
    const bySetval = Object.keys(seq).length > 0;
    // Roles are cluster-wide: a full-profile backup holds none (a supabase-profile one does).
    const noRoles = opts.profile === 'full';
    const skip = (k: string) => (bySetval && /^sequence .+ value$/.test(k)) || (noRoles && /^(role |member |comment on role )/.test(k));
    // Secret options (a user mapping's password) are never in a backup: a restore cannot give them
    // back, and says so; the other options are compared.
    const notes: string[] = [];
    const secretless = (k: string, v: string, side: 'expected' | 'actual') => {
      if (!/^(user mapping |server )/.test(k) || !v.includes('********')) return v;
      if (side === 'expected') notes.push(`${k}: its secret options (a password) are not in backups and must be set again after a restore`);
      return v.replace(/(, )?\b\w*(password|secret|token|key)\w* \*{8}/gi, '').replace(/OPTIONS \(, /, 'OPTIONS (').replace(/ OPTIONS \(\)/, '');
    };
    const strip = (f: typeof actual, side: 'expected' | 'actual') => ({ ...f, objects: Object.fromEntries(Object.entries(f.objects).filter(([k]) => !skip(k)).map(([k, v]) => [k, secretless(k, v, side)])) });
    for (const d of compareFingerprints(strip(e.fingerprint, 'expected'), strip(actual, 'actual'))) {
      // What only supautils allows on the platform cannot be given on a plain drill server: said, not failed.
      if (opts.plainServer && /^owner event trigger \S+$/.test(d.key)) notes.push(`${d.message}: plain PostgreSQL lets only a superuser own an event trigger (on Supabase, supautils gives it to postgres)`);
      else out.differences.push(d.message);
    }
    if (notes.length) out.notes = [...(out.notes ?? []), ...notes];
    if (noRoles) out.notes = [...(out.notes ?? []), 'roles are cluster-wide and a full-profile backup holds none: they were not compared'];
  } else {
    out.notes = ['this backup recorded no catalog fingerprint: the catalog was not compared'];
  }
  return out;
}
