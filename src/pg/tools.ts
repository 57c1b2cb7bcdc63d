/**
 * Choosing the PostgreSQL client tools (pg_dump, psql, …) for a server version.
 *
 * pg_dump must not be older than the server (it refuses, or worse, misses features); a newer one
 * works but writes SQL the older server may not accept on restore. So: the same major when one is
 * installed; a newer one with a warning; never an older one.
 */
import { constants, accessSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { loadExeca } from '../util/lazy.js';
import { HbError } from '../domain/errors.js';

export interface PgTool {
  name: string;
  path: string;
  /** e.g. "15.20 (Debian 15.20-0+deb12u1)" */
  version: string;
  major: number;
}

export interface ToolChoice {
  tool: PgTool;
  /** Set when the tool is newer than the server. */
  warning?: string;
}

const versionCache = new Map<string, PgTool | null>();

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Parses `pg_dump (PostgreSQL) 15.20 (Debian …)`. */
export function parseToolVersion(out: string): { version: string; major: number } | null {
  const m = /\(PostgreSQL\)\s+((\d+)(?:\.(\d+))?\S*(?:\s+\(.*\))?)/.exec(out);
  if (!m) return null;
  const first = Number(m[2]);
  const major = first >= 10 ? first : Number(`${first}.${m[3] ?? 0}`);
  return { version: m[1]!.trim(), major };
}

async function describeTool(name: string, p: string): Promise<PgTool | null> {
  const key = `${p}`;
  if (versionCache.has(key)) return versionCache.get(key)!;
  let tool: PgTool | null = null;
  try {
    const { execa } = await loadExeca();
    const r = await execa(p, ['--version'], { reject: false, timeout: 10_000 });
    const v = r.exitCode === 0 ? parseToolVersion(String(r.stdout)) : null;
    if (v) tool = { name, path: p, ...v };
  } catch {
    tool = null;
  }
  versionCache.set(key, tool);
  return tool;
}

/** Where PostgreSQL's programs are looked for: `dump.pgBinDir` only when set, else the usual places and PATH. */
export interface ToolSearch {
  pgBinDir?: string | undefined;
  /** PATH's directories (from the configuration's environment). */
  path: readonly string[];
}

/** The configuration's tool search. */
export function toolSearch(config: { dump: { pgBinDir?: string | undefined }; environment: { path: readonly string[] } }): ToolSearch {
  return { pgBinDir: config.dump.pgBinDir, path: config.environment.path };
}

/** Every installed copy of a tool: the configured directory only, or the usual places. */
export async function findTools(name: string, search: ToolSearch): Promise<PgTool[]> {
  const { pgBinDir } = search;
  const candidates: string[] = [];
  if (pgBinDir) {
    candidates.push(path.join(pgBinDir, name));
  } else {
    for (const root of ['/usr/lib/postgresql', '/usr/pgsql', '/opt/homebrew/opt']) {
      let entries: string[] = [];
      try {
        entries = readdirSync(root);
      } catch {
        continue;
      }
      for (const d of entries) candidates.push(path.join(root, d, 'bin', name));
    }
    for (const dir of search.path) if (dir) candidates.push(path.join(dir, name));
  }
  const seen = new Set<string>();
  const tools: PgTool[] = [];
  for (const c of candidates) {
    if (seen.has(c) || !isExecutable(c)) continue;
    seen.add(c);
    const t = await describeTool(name, c);
    if (t) tools.push(t);
  }
  return tools;
}

/**
 * Picks the tool for a server major version.
 * @throws HbError `pg-tool-not-found` when none is installed, `pg-tool-too-old` when only older ones are.
 */
export async function chooseTool(name: string, serverMajor: number, search: ToolSearch): Promise<ToolChoice> {
  const { pgBinDir } = search;
  if (!pgBinDir) {
    // The usual place first: one `--version` instead of asking every installed copy.
    const usual = path.join('/usr/lib/postgresql', String(serverMajor), 'bin', name);
    const t = isExecutable(usual) ? await describeTool(name, usual) : null;
    if (t?.major === serverMajor) return { tool: t };
  }
  const tools = await findTools(name, search);
  const where = pgBinDir ? `in ${pgBinDir} (dump.pgBinDir)` : 'in /usr/lib/postgresql/*/bin or on PATH';
  const pkg = `postgresql-client-${serverMajor}`;
  if (tools.length === 0) {
    throw new HbError('pg-tool-not-found', `no ${name} found ${where}`, `install ${pkg} (apt install ${pkg}) or set dump.pgBinDir`);
  }
  const same = tools.find((t) => t.major === serverMajor);
  if (same) return { tool: same };
  const newer = tools.filter((t) => t.major > serverMajor).sort((a, b) => a.major - b.major);
  if (newer.length > 0) {
    const t = newer[0]!;
    return {
      tool: t,
      warning: `using ${name} ${t.major} for a PostgreSQL ${serverMajor} server: its output may not restore into PostgreSQL ${serverMajor}; install ${pkg} for an exact match`,
    };
  }
  const found = tools.map((t) => `${t.major} (${t.path})`).join(', ');
  throw new HbError(
    'pg-tool-too-old',
    `the server runs PostgreSQL ${serverMajor} but the only ${name} found ${found.includes(',') ? 'are' : 'is'} ${found}`,
    `install ${pkg} (apt install ${pkg}) or point dump.pgBinDir at a PostgreSQL ${serverMajor} bin directory`,
  );
}

/** The newest installed copy of a tool (for psql when no server major is known yet). */
export async function newestTool(name: string, search: ToolSearch): Promise<PgTool> {
  const tools = await findTools(name, search);
  if (tools.length === 0) {
    throw new HbError('pg-tool-not-found', `no ${name} found`, 'install postgresql-client (apt install postgresql-client) or set dump.pgBinDir');
  }
  return tools.sort((a, b) => b.major - a.major)[0]!;
}
