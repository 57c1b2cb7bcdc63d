/**
 * Supabase Storage as an {@link OffsiteTarget}: an adapter over today's {@link OffsiteStore}
 * (src/offsite/store.ts, unchanged), which keeps the bucket checks and deletes, plus streamed
 * puts and gets, full stat and a recursive list through supabase-js with the same streaming
 * transport ({@link streamingFetch}).
 *
 * Object names: Supabase Storage accepts only ASCII letters, digits and `_/!-.'() &$@=;:+,?`
 * in a name (storage-api's isValidKey), and supabase-js does not URL-encode names, so a `?` or
 * `#` would cut the URL. Any other character of a key — non-ASCII, `*`, `?`, `%`, `#`… — is
 * stored as `*` and two hex digits per UTF-8 byte ("é" → "*C3*A9") and decoded back by list, so
 * every key round-trips. The names hybrid-backup writes today (`20261124T031500Z_daily.sql`,
 * `….meta.json`) have none of these and are stored as they are.
 *
 * `location()` keeps the form the ledger has always recorded, `bucket/prefix/name`, so existing
 * rows, `deleteCopy` and `restore --from offsite` keep working.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { SupabaseClient } from '@supabase/supabase-js';
import { HbError } from '../domain/errors.js';
import { loadSupabase } from '../util/lazy.js';
import { redact } from '../util/redact.js';
import { OffsiteStore, type OffsiteSettings, streamingFetch } from './store.js';
import {
  abortedError,
  checkKey,
  checkMetadata,
  CountingStream,
  isPullBody,
  type OffsiteListEntry,
  type OffsiteObjectInfo,
  OffsiteNotFoundError,
  type OffsiteTarget,
  type PutOptions,
  pullBodyStream,
  type PullBody,
} from './target.js';

/** The characters Supabase Storage keeps in a name as they are (storage-api's isValidKey, less `*` and `?`). */
const KEEP = /^[A-Za-z0-9_/!\-.'() &$@=;:+,]$/u;

/** A key as the name Storage accepts (see the module comment). */
export function toStorageName(key: string): string {
  let out = '';
  for (const ch of key) {
    if (KEEP.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `*${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The key a stored name stands for (the inverse of {@link toStorageName}). */
export function fromStorageName(name: string): string {
  return name.replace(/(?:\*[0-9A-F]{2})+/g, (run) => Buffer.from(run.replace(/\*/g, ''), 'hex').toString('utf8'));
}

/** supabase-js builds a Realtime client too; nothing here uses it (and Node 20 has no WebSocket). */
class NoRealtime {
  constructor() {
    throw new Error('realtime is not used by hybrid-backup');
  }
}

interface StorageErrorLike {
  message: string;
  status?: number;
  statusCode?: string;
}

interface ListItem {
  name: string;
  id: string | null;
  updated_at?: string | null;
  created_at?: string | null;
  metadata?: { size?: number; lastModified?: string } | null;
}

const PAGE = 100;
const isNotFound = (e: StorageErrorLike | null | undefined) => !!e && (e.status === 404 || e.statusCode === '404' || /not.?found/i.test(e.message));

export class SupabaseTarget implements OffsiteTarget {
  readonly type = 'supabase-storage' as const;

  private constructor(
    readonly name: string,
    private readonly settings: OffsiteSettings,
    private readonly store: OffsiteStore,
    private readonly client: SupabaseClient,
  ) {}

  /** A target over these settings (`offsiteSettings(config)`); sends nothing. */
  static async open(settings: OffsiteSettings, opts: { name?: string } = {}): Promise<SupabaseTarget> {
    return new SupabaseTarget(opts.name ?? 'supabase', settings, await OffsiteStore.open(settings), await SupabaseTarget.client(settings));
  }

  /** A supabase-js client whose every request stops with `signal` (uploads stream: see streamingFetch). */
  private static async client(settings: OffsiteSettings, signal?: AbortSignal): Promise<SupabaseClient> {
    const { createClient } = await loadSupabase();
    return createClient(settings.url, settings.key, {
      auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
      realtime: { transport: NoRealtime as never },
      global: { fetch: streamingFetch(signal) },
    });
  }

  /**
   * The store and client for one call: the long-lived ones, or — for the calls whose
   * supabase-js method takes no signal (upload, info, bucket checks, remove) — ones bound to it.
   */
  private async bound(signal: AbortSignal | undefined): Promise<{ store: OffsiteStore; client: SupabaseClient }> {
    if (!signal) return { store: this.store, client: this.client };
    const [store, client] = await Promise.all([OffsiteStore.open(this.settings, signal), SupabaseTarget.client(this.settings, signal)]);
    return { store, client };
  }

  private objectPath(key: string): string {
    checkKey(key);
    return this.settings.prefix + toStorageName(key);
  }

  location(key?: string): string {
    return `${this.settings.bucket}/${this.settings.prefix}${key === undefined ? '' : toStorageName(key)}`;
  }

  private fail(what: string, e: StorageErrorLike | Error | null | undefined, signal?: AbortSignal): HbError {
    if (signal?.aborted) return abortedError(`the request to ${what}`, signal);
    if (e instanceof HbError) return e;
    const err = e as StorageErrorLike | undefined;
    const status = err?.status ?? (Number(err?.statusCode) || undefined);
    const msg = redact(err?.message ?? 'unknown error').split(this.settings.key).join('***');
    if (status === 401 || status === 403 || /signature|jwt|unauthori[sz]ed/i.test(msg)) {
      return new HbError('offsite-failed', `Supabase Storage refused to ${what}: ${msg}${status ? ` (${status})` : ''}`, `check the service-role key of offsite target "${this.name}" (SUPABASE_SERVICE_ROLE_KEY): it must be the project's service-role key`);
    }
    if (!status) return new HbError('offsite-failed', `cannot reach Supabase Storage to ${what}: ${msg}`, 'check SUPABASE_URL (https://<ref>.supabase.co) and the network');
    return new HbError('offsite-failed', `Supabase Storage could not ${what}: ${msg} (${status})`);
  }

  async ensureReady(signal?: AbortSignal): Promise<void> {
    const { store } = await this.bound(signal);
    try {
      await store.ensureBucket();
    } catch (e) {
      throw this.fail(`check bucket "${this.settings.bucket}"`, e as Error, signal);
    }
  }

  async put(key: string, body: NodeJS.ReadableStream | PullBody, opts: PutOptions): Promise<{ bytes: number }> {
    const objectPath = this.objectPath(key);
    checkMetadata(opts.metadata);
    const location = this.location(key);
    const { signal } = opts;
    const counter = new CountingStream(opts.onBytes, opts.bytes === undefined ? undefined : { bytes: opts.bytes, location });
    // A read error (a file deleted meanwhile, EIO) fails the request body, not the process.
    const reading = pipeline(isPullBody(body) ? pullBodyStream(body) : body, counter).then(
      () => null,
      (e: unknown) => e as Error,
    );
    const stop = () => counter.destroy();
    if (signal?.aborted) {
      stop();
      await reading;
      throw abortedError(`the upload of ${location}`, signal);
    }
    signal?.addEventListener('abort', stop, { once: true });
    try {
      const { client } = await this.bound(signal);
      let up;
      try {
        up = await client.storage.from(this.settings.bucket).upload(objectPath, counter, {
          upsert: true,
          contentType: opts.contentType,
          metadata: opts.metadata,
          duplex: 'half',
          ...(opts.bytes !== undefined ? { headers: { 'content-length': String(opts.bytes) } } : {}),
        });
      } catch (e) {
        stop();
        throw this.fail(`upload ${location}`, e as Error, signal);
      }
      if (up.error) {
        stop();
        if (signal?.aborted) throw abortedError(`the upload of ${location}`, signal);
        const readError = await reading;
        if (readError instanceof HbError) throw readError;
        if (readError && !/premature close|aborted/i.test(readError.message)) {
          throw new HbError('offsite-failed', `cannot read what was to be uploaded to ${location}: ${readError.message}`, undefined, { cause: readError });
        }
        throw this.fail(`upload ${location}`, up.error, signal);
      }
      const readError = await reading;
      if (readError instanceof HbError) throw readError;
      if (readError) throw new HbError('offsite-failed', `cannot read what was to be uploaded to ${location}: ${readError.message}`, undefined, { cause: readError });
    } finally {
      signal?.removeEventListener('abort', stop);
    }
    const sent = counter.bytes;
    const stored = await this.stat(key, signal);
    if (!stored) throw new HbError('offsite-mismatch', `the upload of ${location} reported success but the object is not there`, 'it is retried at the next run');
    if (stored.bytes !== sent) {
      await this.remove([key]).catch(() => {});
      throw new HbError('offsite-mismatch', `${location} holds ${stored.bytes} bytes, ${sent} were sent; the copy was removed`, 'it is retried at the next run');
    }
    return { bytes: stored.bytes };
  }

  async stat(key: string, signal?: AbortSignal): Promise<OffsiteObjectInfo | null> {
    const objectPath = this.objectPath(key);
    const { client } = await this.bound(signal);
    let r;
    try {
      r = await client.storage.from(this.settings.bucket).info(objectPath);
    } catch (e) {
      throw this.fail(`read ${this.location(key)}`, e as Error, signal);
    }
    if (r.error) {
      if (isNotFound(r.error) && !signal?.aborted) return null;
      throw this.fail(`read ${this.location(key)}`, r.error, signal);
    }
    const data = r.data as { size?: number; metadata?: Record<string, unknown> | null; lastModified?: string; updatedAt?: string; createdAt?: string };
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(data.metadata ?? {})) if (v !== null && v !== undefined) metadata[k.toLowerCase()] = typeof v === 'string' ? v : JSON.stringify(v);
    return { bytes: Number(data.size ?? -1), metadata, lastModified: data.lastModified ?? data.updatedAt ?? data.createdAt ?? null };
  }

  async get(key: string, signal?: AbortSignal): Promise<Readable> {
    const objectPath = this.objectPath(key);
    let r;
    try {
      r = await this.client.storage.from(this.settings.bucket).download(objectPath, {}, signal ? { signal } : undefined).asStream();
    } catch (e) {
      throw this.fail(`download ${this.location(key)}`, e as Error, signal);
    }
    if (r.error) {
      if (isNotFound(r.error) && !signal?.aborted) throw new OffsiteNotFoundError(this.location(key));
      throw this.fail(`download ${this.location(key)}`, r.error, signal);
    }
    return Readable.fromWeb(r.data as unknown as WebReadableStream);
  }

  /**
   * Storage lists one folder at a time (folders first, then files, `search` a case-insensitive
   * LIKE on the names): this walks down from the folder the prefix ends in, filters exactly,
   * and pages with offsets until a page comes back empty.
   */
  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<OffsiteListEntry> {
    const full = this.settings.prefix + toStorageName(prefix);
    const cut = full.lastIndexOf('/') + 1;
    yield* this.walk(full.slice(0, cut), full.slice(cut), signal);
  }

  private async *walk(folder: string, start: string, signal: AbortSignal | undefined): AsyncIterable<OffsiteListEntry> {
    const bucket = this.client.storage.from(this.settings.bucket);
    const folders: string[] = [];
    for (let offset = 0; ; offset += PAGE) {
      let r;
      try {
        r = await bucket.list(folder.replace(/\/$/, ''), { limit: PAGE, offset, sortBy: { column: 'name', order: 'asc' }, ...(start ? { search: start } : {}) }, signal ? { signal } : undefined);
      } catch (e) {
        throw this.fail(`list ${this.settings.bucket}/${folder}${start}`, e as Error, signal);
      }
      if (r.error) throw this.fail(`list ${this.settings.bucket}/${folder}${start}`, r.error, signal);
      const items = (r.data ?? []) as unknown as ListItem[];
      if (items.length === 0) break;
      for (const item of items) {
        if (!item.name.startsWith(start)) continue;
        if (item.id === null) {
          folders.push(`${folder}${item.name}/`);
          continue;
        }
        // The Dashboard's marker for an empty folder: not an object of ours.
        if (item.name === '.emptyFolderPlaceholder') continue;
        yield {
          key: fromStorageName(`${folder}${item.name}`.slice(this.settings.prefix.length)),
          bytes: Number(item.metadata?.size ?? 0),
          lastModified: item.metadata?.lastModified ?? item.updated_at ?? item.created_at ?? null,
        };
      }
    }
    for (const f of folders) yield* this.walk(f, '', signal);
  }

  async remove(keys: string[], signal?: AbortSignal): Promise<void> {
    const locations = keys.map((k) => `${this.settings.bucket}/${this.objectPath(k)}`);
    if (locations.length === 0) return;
    const { store } = await this.bound(signal);
    for (let i = 0; i < locations.length; i += 1000) {
      try {
        await store.remove(...locations.slice(i, i + 1000));
      } catch (e) {
        throw this.fail(`delete ${locations.length === 1 ? locations[0] : `${locations.length} objects under ${this.location()}`}`, e as Error, signal);
      }
    }
  }
}
