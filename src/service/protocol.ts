/**
 * The control-socket protocol: newline-delimited JSON over a Unix stream socket.
 *
 * A client sends one request per line:
 *   {"command": "list", "args": {"limit": 5}, "id": "optional correlation id"}
 * and receives, for that request, any number of events, then exactly one result:
 *   {"type": "progress", "id": …, "phase": "dump", "bytes": 1048576, "elapsedMs": 812}
 *   {"type": "notice", "id": …, "message": "waiting for …"}
 *   {"type": "alive", "id": …}   (every few seconds while the request is being worked on)
 *   {"type": "result", "id": …, "ok": true, "exitCode": 0, "doc": {…}}
 *   {"type": "result", "id": …, "ok": false, "exitCode": 2, "error": {"code": …, "message": …, "hint": …}}
 * Requests on one connection are answered in order. A malformed line gets an error result and
 * the connection is closed.
 */
import { z } from 'zod';

export const PROTOCOL_VERSION = 1;
/** Longest request line accepted. */
export const MAX_REQUEST_BYTES = 64 * 1024;

export const requestSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION).optional(),
  id: z.string().max(128).optional(),
  command: z.string().min(1).max(64),
  args: z.record(z.string(), z.unknown()).default({}),
  /**
   * The database the caller means (its DATABASE_URL, never a password), for commands that dump or
   * restore: the service refuses when it protects another one.
   */
  database: z.strictObject({ host: z.string().max(1024), port: z.int().min(1).max(65535), database: z.string().max(1024), user: z.string().max(1024) }).optional(),
});
export type Request = z.output<typeof requestSchema>;

export interface ErrorBody {
  code: string;
  message: string;
  hint?: string;
}

export type Reply =
  | { type: 'progress'; id?: string; phase: string; bytes: number; total?: number; elapsedMs: number }
  | { type: 'alive'; id?: string }
  | { type: 'notice'; id?: string; message: string }
  | { type: 'result'; id?: string; ok: true; exitCode: number; doc: unknown }
  | { type: 'result'; id?: string; ok: false; exitCode: number; error: ErrorBody };

/** What a client accepts from the service: validated, so a broken peer cannot crash the CLI. */
export const replySchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('progress'), id: z.string().optional(), phase: z.string(), bytes: z.number(), total: z.number().optional(), elapsedMs: z.number() }),
  z.object({ type: z.literal('notice'), id: z.string().optional(), message: z.string() }),
  z.object({ type: z.literal('alive'), id: z.string().optional() }),
  z.object({
    type: z.literal('result'),
    id: z.string().optional(),
    ok: z.boolean(),
    exitCode: z.int(),
    doc: z.unknown().optional(),
    error: z.object({ code: z.string(), message: z.string(), hint: z.string().optional() }).optional(),
  }),
]);
