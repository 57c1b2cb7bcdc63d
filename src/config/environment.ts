/**
 * What the program takes from its environment besides the configuration's own variables
 * (schema.ts, ENV_BINDINGS): libpq's variables, the search path for tools, the debug switch and
 * how it was launched. Read here and only here, once, so every other module gets them as values
 * — testable, and the same in the service for every request.
 */
import path from 'node:path';

/** libpq's variables this program honours, as libpq itself would (plus HOME and USER it defaults from). */
export interface LibpqEnv {
  PGHOST?: string;
  PGPORT?: string;
  PGUSER?: string;
  PGDATABASE?: string;
  PGPASSWORD?: string;
  PGSERVICE?: string;
  PGSERVICEFILE?: string;
  PGSYSCONFDIR?: string;
  PGSSLMODE?: string;
  PGTZ?: string;
  PGCLIENTENCODING?: string;
  HOME?: string;
  USER?: string;
}

const LIBPQ_KEYS: ReadonlyArray<keyof LibpqEnv> = [
  'PGHOST',
  'PGPORT',
  'PGUSER',
  'PGDATABASE',
  'PGPASSWORD',
  'PGSERVICE',
  'PGSERVICEFILE',
  'PGSYSCONFDIR',
  'PGSSLMODE',
  'PGTZ',
  'PGCLIENTENCODING',
  'HOME',
  'USER',
];

export interface Environment {
  libpq: LibpqEnv;
  /** PATH, as a list of directories (tools and server binaries are looked for there). */
  path: string[];
  /** HYBRID_BACKUP_DEBUG: an internal error prints its stack trace. */
  debug: boolean;
  /** Started by `npm start` (npm's lifecycle variable), so the daemon's hints can say `npm start`. */
  launchedByNpm: boolean;
}

/** The environment's part this program reads (see the module comment). */
export function readEnvironment(env: NodeJS.ProcessEnv = process.env): Environment {
  const libpq: LibpqEnv = {};
  for (const k of LIBPQ_KEYS) if (env[k] !== undefined && env[k] !== '') libpq[k] = env[k];
  return {
    libpq,
    path: (env.PATH ?? '/usr/bin:/bin').split(path.delimiter).filter((d) => d !== ''),
    debug: !!env.HYBRID_BACKUP_DEBUG,
    launchedByNpm: env.npm_lifecycle_event === 'start',
  };
}

/** systemd socket activation's variables (sd_listen_fds), for the socket server. */
export function socketActivationEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return env;
}

/**
 * The AWS SDK prints, on Node 20, a multi-line notice about its own future releases into every
 * command's stderr; this program pins the SDK, so the notice says nothing to its operator.
 */
export function silenceSdkNotices(env: NodeJS.ProcessEnv = process.env): void {
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
}
