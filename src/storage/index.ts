/**
 * The files of a Supabase project's Storage, as part of a backup: captured into a
 * content-addressed store under BACKUP_DIR/storage (named by SHA-256, so a file kept by many
 * backups is stored once), described by a manifest per backup, restored into a project, checked
 * and collected. Layers: api (Storage REST over http.ts) → store (the files) → capture / restore /
 * maintenance (what commands call).
 *
 * Typical use, right after a dump:
 *
 *   const api = StorageApi.open({ url, serviceRoleKey, maxSockets: concurrency + 2, signal });
 *   const store = await StorageStore.open(backupDir);
 *   try {
 *     const r = await captureStorage({ api, store, buckets, previous, rows, concurrency, signal,
 *       beforeFetch: (p) => checkFreeSpace(store.root, p.bytesToFetch) });
 *     await writeManifestFile(manifestPath, r.manifest);
 *   } finally { api.close(); }
 */
export { StorageApi, type StorageApiOptions, StorageRequestError, type BucketSettings, type StorageBucket, encodeName } from './api.js';
export { type RetryNotice } from './http.js';
export { StorageStore, type PutResult, type VerifyResult } from './store.js';
export {
  captureStorage,
  planCapture,
  checkFreeSpace,
  type CaptureOptions,
  type CapturePlan,
  type CaptureProgress,
  type CaptureResult,
} from './capture.js';
export { restoreStorage, type RestoreOptions, type RestoreProgress, type RestoreResult } from './restore.js';
export { verifyManifest, collectGarbage, type StorageVerifyResult, type GcResult, type RehashCache } from './maintenance.js';
export {
  MANIFEST_FORMAT,
  manifestSchema,
  parseManifest,
  readManifestFile,
  writeManifestFile,
  summarize,
  describeCompleteness,
  referencedShas,
  objectKey,
  type Manifest,
  type ManifestBucket,
  type ManifestObject,
  type ManifestMissing,
  type ManifestSummary,
  type RowKey,
  type RowCheck,
} from './manifest.js';
export { STORAGE_CODES } from './errors.js';
