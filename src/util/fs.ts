/**
 * Durable file operations: a file is complete under its final name or absent.
 * Write to a temporary name, fsync it, rename, fsync the directory.
 */
import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { HbError } from '../domain/errors.js';

/**
 * Creates a directory (and parents) private to the owner; tightens an existing one to 0700.
 * `noLink`: the directory itself must not be a symbolic link (a `reports` link must not make the
 * service chmod and write into another directory); it is never chmodded through a link.
 * @throws HbError `unsafe-path` for a link where none may be
 */
export async function ensurePrivateDir(dir: string, opts: { noLink?: boolean } = {}): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const link = await fs.lstat(dir);
  if (link.isSymbolicLink()) {
    if (opts.noLink) throw new HbError('unsafe-path', `${dir} is a symbolic link; refusing to write through it`, `remove the link (rm ${dir}); hybrid-backup creates the directory itself`);
    return; // the operator's own link (BACKUP_DIR on another disk): used, never chmodded through
  }
  const st = link;
  if ((st.mode & 0o777) !== 0o700) {
    try {
      await fs.chmod(dir, 0o700);
    } catch {
      // Not ours to change (a mount point); the files inside are still 0600.
    }
  }
}

/** fsyncs a directory so a rename inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsyncs a file's data through a fresh descriptor. */
export async function fsyncFile(file: string): Promise<void> {
  const fh = await fs.open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Refuses a symbolic link at `file` (where the program is about to create, replace or append to
 * a file of its own), and a path that is not a regular file.
 * @throws HbError `unsafe-path`
 */
export async function assertNotLink(file: string): Promise<void> {
  const st = await fs.lstat(file).catch(() => null);
  if (st?.isSymbolicLink()) throw new HbError('unsafe-path', `${file} is a symbolic link; refusing to write through it`, `remove the link (rm ${file}); hybrid-backup creates the file itself`);
}

/** Writes `data` to `file` atomically (temp + fsync + rename + directory fsync), mode 0600. */
export async function atomicWriteFile(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const fh = await fs.open(tmp, 'wx', mode);
  try {
    await fh.chmod(mode); // exactly this mode, whatever the umask
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  try {
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
  await fsyncDir(dir);
}

/** Removes a file if present; true when something was removed. */
export async function removeIfExists(file: string): Promise<boolean> {
  try {
    await fs.unlink(file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

/** Bytes available to an unprivileged writer on the filesystem holding `dir`. */
export async function freeBytes(dir: string): Promise<number> {
  const s = await fs.statfs(dir);
  return Number(s.bavail) * Number(s.bsize);
}

/** Temporary names this product writes, with the writer's pid: atomic writes and offsite downloads. */
const TEMP_NAME = /^\.(?:.+\.(\d+)\.\d+\.tmp|offsite-\d+-(\d+)\.download)$/;

/**
 * Removes temporary files left by processes that died mid-write (a crash, kill -9). A file is
 * removed only when its writer's pid is gone and it has not changed for `quietMs`, so a live
 * writer (or one on another host sharing the folder) is never disturbed. Returns the names removed.
 */
export async function removeStaleTempFiles(dir: string, isAlive: (pid: number) => boolean, quietMs = 10 * 60_000): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMP_NAME.exec(name);
    if (!m) continue;
    const pid = Number(m[1] ?? m[2]);
    if (pid === process.pid || isAlive(pid)) continue;
    try {
      const st = await fs.lstat(path.join(dir, name));
      if (!st.isFile() || Date.now() - st.mtimeMs < quietMs) continue;
      await fs.rm(path.join(dir, name), { force: true });
      removed.push(name);
    } catch {
      // gone already, or not ours to remove
    }
  }
  return removed;
}
