/**
 * The `.meta.json` sidecar beside every backup file: enough to understand and check the file
 * without the ledger (kind, description, checksum, versions, per-table row counts).
 */
import { readFile } from 'node:fs/promises';
import type { BackupKind, Compression, DumpProfile, TableCounts } from '../domain/types.js';

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
  serverVersion: string;
  pgDumpVersion: string | null;
  uncompressedBytes: number;
  tableCount: number;
  rowCount: number;
  tables: TableCounts;
}

export async function readSidecar(file: string): Promise<Sidecar> {
  return JSON.parse(await readFile(file, 'utf8')) as Sidecar;
}
