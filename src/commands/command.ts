/**
 * A command: a name, a zod schema for its arguments, and `run(ctx, args)` returning the JSON
 * document the SPEC promises. The same `run` serves the CLI in-process, the control socket and
 * the tests; `render` turns the document into what a person reads.
 */
import type { z } from 'zod';
import type { RunContext } from '../context.js';

export interface RenderView {
  timeZone: string;
  now: number;
}

export interface Command<S extends z.ZodType = z.ZodType, D = unknown> {
  name: string;
  summary: string;
  args: S;
  /** Takes a backup (serialised with other backups by the service). */
  isBackup?: boolean;
  run(ctx: RunContext, args: z.output<S>): Promise<D>;
  /** Human output for the document `run` returned. */
  render(doc: D, view: RenderView): string;
  /** Exit code for a successful document (default 0), e.g. verify exits 1 when a file is bad. */
  exitCode?(doc: D): number;
}

/** Helps TypeScript infer a command's argument and document types. */
export function defineCommand<S extends z.ZodType, D>(c: Command<S, D>): Command<S, D> {
  return c;
}
