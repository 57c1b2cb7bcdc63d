/**
 * A command: a name, a zod schema for its arguments, and `run(ctx, args)` returning the JSON
 * document the SPEC promises. The same `run` serves the CLI in-process, the control socket and
 * the tests; `render` turns the document into what a person reads.
 */
import { z } from 'zod';
import type { RunContext } from '../context.js';
import { HbError, isErrorCode } from '../domain/errors.js';

export interface RenderView {
  timeZone: string;
  now: number;
}

/**
 * A command's command line, beside its `run`: its positional arguments and options (commander's
 * notation), and how they become its arguments. The CLI builds itself from these alone, so a
 * command cannot exist on the socket and be missing from the command line.
 */
export interface CliSpec {
  /** Positional arguments: `<id>` (required), `[which]` (optional), `[description...]` (the rest). */
  arguments?: ReadonlyArray<{ name: string; description: string; default?: string }>;
  options?: ReadonlyArray<{
    flags: string;
    description: string;
    choices?: readonly string[];
    default?: string;
    /** A whole number (anything else is refused by the argument schema). */
    int?: boolean;
    required?: boolean;
  }>;
  /** Shown after the options in --help: examples. */
  help?: string;
  /** The command's raw arguments from the positionals (in order) and the options (global ones included, e.g. `json`). */
  toArgs?(positionals: unknown[], options: Record<string, unknown>): unknown;
}

export interface Command<S extends z.ZodType = z.ZodType, D = unknown> {
  name: string;
  /** One sentence, shown by --help. */
  summary: string;
  args: S;
  /** Its command line; none: it takes no arguments. */
  cli?: CliSpec;
  /** Takes a backup: refused before anything is opened when no database is configured. */
  isBackup?: boolean;
  /**
   * Dumps or restores the protected database: the CLI tells the service which database it means,
   * and the service refuses when it protects another one.
   */
  meansDatabase?: boolean;
  /**
   * It writes (a backup, a restore, deletions): a stopping service lets it finish within the grace
   * period. Without it, a stop aborts it at once (read-only work has nothing to finish).
   */
  grace?: boolean;
  /** Opens a lost or unreadable ledger to repair it (`ledger-rebuild`); every other command refuses one. */
  recoversLedger?: boolean;
  /** Only looks: on a full disk it reads a copy of the ledger rather than fail (the monitor must say the disk is full). */
  worksOnFullDisk?: boolean;
  /**
   * Needs only the configuration (`ctx.config`): runs in the CLI's own process — never through the
   * service, whose configuration may differ — and opens and creates nothing.
   */
  configOnly?: boolean;
  run(ctx: RunContext, args: z.output<S>): Promise<D>;
  /** Human output for the document `run` returned. */
  render(doc: D, view: RenderView): string;
  /** Exit code for a successful document (default 0), e.g. verify exits 1 when a file is bad. */
  exitCode?(doc: D): number;
  /** Exit code for any error, overriding 1/2: monitoring plugins report UNKNOWN (3) when they cannot check. */
  errorExitCode?: number;
}

/** Helps TypeScript infer a command's argument and document types. */
export function defineCommand<S extends z.ZodType, D>(c: Command<S, D>): Command<S, D> {
  return c;
}

/**
 * Validates raw arguments (from flags or a socket request) against a command's schema.
 * @throws HbError `usage`, or the code a refinement names (e.g. `description-invalid`)
 */
export function parseCommandArgs(cmd: Command, raw: unknown): unknown {
  // Unknown argument names are refused, never dropped: a misspelt `dryRun` must not become a real
  // prune. Own keys are checked before zod sees them: it would take `__proto__` as the object's
  // prototype (and drop the key) rather than as a name it does not know.
  if (cmd.args instanceof z.ZodObject && raw !== null && typeof raw === 'object') {
    const known = new Set(Object.keys(cmd.args.shape));
    const unknown = Object.keys(raw).find((k) => !known.has(k));
    if (unknown !== undefined) {
      throw new HbError('usage', `invalid arguments for ${cmd.name}: unknown argument ${JSON.stringify(unknown)}`, `${cmd.name} takes ${[...known].join(', ') || 'no arguments'}; see hybrid-backup ${cmd.name} --help`);
    }
  }
  const schema = cmd.args instanceof z.ZodObject ? cmd.args.strict() : cmd.args;
  const r = schema.safeParse(raw);
  if (r.success) return r.data;
  const i = r.error.issues[0]!;
  const params = (i as { params?: { code?: string; hint?: string } }).params;
  if (i.code === 'custom' && params?.code && isErrorCode(params.code)) throw new HbError(params.code, i.message, params.hint);
  throw new HbError('usage', `invalid ${i.path.join('.') || 'arguments'} for ${cmd.name}: ${i.message.replace(/^Invalid input: /, '')}`, `see hybrid-backup ${cmd.name} --help`);
}
