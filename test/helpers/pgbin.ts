/** Real PostgreSQL binaries, and fake pg_dump wrappers around them for failure tests. */
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ADMIN_URL, query } from './pg.js';

let serverMajor: number | undefined;

export async function getServerMajor(): Promise<number> {
  if (serverMajor === undefined) {
    const [r] = await query<{ v: string }>(ADMIN_URL, `select current_setting('server_version_num') as v`);
    serverMajor = Math.floor(Number(r!.v) / 10000);
  }
  return serverMajor;
}

/** The bin directory of the client tools matching the server. */
export async function realPgBin(): Promise<string> {
  const major = await getServerMajor();
  const dir = `/usr/lib/postgresql/${major}/bin`;
  if (existsSync(path.join(dir, 'pg_dump'))) return dir;
  const found = readdirSync('/usr/lib/postgresql').map((d) => `/usr/lib/postgresql/${d}/bin`).find((d) => existsSync(path.join(d, 'pg_dump')));
  if (!found) throw new Error(`no pg_dump for PostgreSQL ${major}: install postgresql-client-${major}`);
  return found;
}

/**
 * Writes a directory with a `pg_dump` (and the real `psql` and `pg_dumpall`) for `dump.pgBinDir`. `body` is the shell
 * code run for a dump, with $REAL the real pg_dump; `version` is what `--version` reports.
 */
export async function fakePgBin(dir: string, body: string, version?: string): Promise<string> {
  const real = await realPgBin();
  const bin = path.join(dir, 'fakebin');
  mkdirSync(bin, { recursive: true });
  const versionLine = version ? `echo "pg_dump (PostgreSQL) ${version}"` : `exec "$REAL" --version`;
  writeFileSync(
    path.join(bin, 'pg_dump'),
    `#!/bin/sh\nREAL=${real}/pg_dump\nif [ "$1" = "--version" ]; then ${versionLine}; exit 0; fi\n${body}\n`,
  );
  chmodSync(path.join(bin, 'pg_dump'), 0o755);
  for (const tool of ['psql', 'pg_dumpall']) {
    writeFileSync(path.join(bin, tool), `#!/bin/sh\nexec ${real}/${tool} "$@"\n`);
    chmodSync(path.join(bin, tool), 0o755);
  }
  return bin;
}
