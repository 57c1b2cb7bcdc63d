/**
 * The `.meta.json` sidecar beside every backup file: enough to understand and check the file
 * without the ledger (kind, description, checksum, versions, per-table row counts), and for a
 * supabase-profile backup the platform layout a restore drill prepares its scratch database with.
 */
import { readFile } from 'node:fs/promises';
import type { BackupEvidence, BackupKind, Compression, DumpProfile, TableCounts } from '../domain/types.js';
import type { PlatformLayout } from './profiles.js';

export const SIDECAR_FORMAT = 'hybrid-backup/1';

export interface Sidecar {
  format: typeof SIDECAR_FORMAT;
  kind: BackupKind;
  description: string | null;
  /** The backup file's name (in the same directory). */
  file: string;
  bytes: number;
  sha256: string;
  compression: Compression;
  profile: DumpProfile;
  createdAt: string;
  finishedAt: string;
  durationMs: number;
  database: string;
  /** Where it was taken from, without the password (absent in sidecars of older versions). */
  source?: string;
  /** The source cluster's system identifier, when the server shows it. */
  sourceSystemId?: string | null;
  serverVersion: string;
  pgDumpVersion: string | null;
  uncompressedBytes: number;
  tableCount: number;
  rowCount: number;
  tables: TableCounts;
  /**
   * Supabase profile: the source's platform schemas, extensions, reserved roles and the schemas'
   * DDL at backup time (null when it could not be read; absent in sidecars of older versions).
   */
  platform?: PlatformLayout | null;
  /** What a drill proves the restore against (data digests, catalog fingerprint, …); absent in older sidecars. */
  evidence?: BackupEvidence | null;
  /**
   * With `encryption.local`: the file is an age file to these recipients, `bytes` and `sha256`
   * are the ciphertext's, and `plainBytes`/`plainSha256` the decrypted file's. Absent otherwise.
   */
  encryption?: { format: 'age-encryption.org/v1'; recipients: string[] } | null;
  plainBytes?: number;
  plainSha256?: string;
  /** The backup's Supabase Storage files: where their manifest is and what it holds (absent: none captured). */
  storage?: SidecarStorage | null;
}

/** What the sidecar says of the files (the manifest itself is the `.storage.json` file). */
export interface SidecarStorage {
  /** The manifest's file name (in the same directory); null when the capture failed. */
  file: string | null;
  sha256: string | null;
  summary: string;
  complete: boolean;
  objects: number;
  bytes: number;
  error?: { code: string; message: string } | null;
}

export async function readSidecar(file: string): Promise<Sidecar> {
  return JSON.parse(await readFile(file, 'utf8')) as Sidecar;
}
