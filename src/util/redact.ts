/**
 * Secret scrubbing for everything that leaves the process: logs, ledger rows, error messages,
 * reports. Two layers: the exact secret values the configuration holds, and patterns that catch
 * credentials in text we did not produce (a password inside a connection URL in pg_dump's
 * stderr, an `Authorization: Bearer` header echoed back).
 */

const MASK = '***';

const PATTERNS: ReadonlyArray<[RegExp, string]> = [
  // scheme://user:password@host  → scheme://user:***@host
  [/([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*):([^\s@/]*)@/gi, `$1:${MASK}@`],
  // password=secret in libpq key/value strings and query strings
  [/(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'"]+)/gi, `$1${MASK}`],
  // PGPASSWORD=secret
  [/(\bPGPASSWORD=)(\S+)/g, `$1${MASK}`],
  // bearer tokens and API keys
  [/(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}/gi, `$1${MASK}`],
  [/\bsbp_[A-Za-z0-9]{16,}\b/g, MASK],
  // an age identity (private key), wherever it turns up
  [/\bAGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}\b/gi, MASK],
  [/\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b/g, MASK],
  [/(\bapikey["'=:\s]+)[A-Za-z0-9._-]{16,}/gi, `$1${MASK}`],
];

export class Redactor {
  private readonly secrets: string[] = [];

  /** Registers a secret value; every later {@link redact} masks it wherever it appears. */
  addSecret(value: string | undefined | null): void {
    if (!value || value.length < 4) return;
    if (!this.secrets.includes(value)) {
      this.secrets.push(value);
      // Longest first, so a secret that contains another is masked whole.
      this.secrets.sort((a, b) => b.length - a.length);
    }
    // The percent-encoded form appears in URLs.
    const encoded = encodeURIComponent(value);
    if (encoded !== value && !this.secrets.includes(encoded)) {
      this.secrets.push(encoded);
      this.secrets.sort((a, b) => b.length - a.length);
    }
  }

  /**
   * Registers the password of a connection string (URL or libpq key=value); the whole string
   * when no password can be found in it, to be safe.
   */
  addConnectionSecret(conn: string): void {
    let password: string | undefined;
    try {
      if (/^[a-z][a-z0-9+.-]*:\/\//i.test(conn)) password = decodeURIComponent(new URL(conn).password) || undefined;
      else password = /\bpassword\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))/.exec(conn)?.slice(1).find((x) => x !== undefined)?.replace(/\\(.)/g, '$1');
    } catch {
      password = undefined;
    }
    if (password) this.addSecret(password);
    else if (/password/i.test(conn)) this.addSecret(conn);
  }

  redact(text: string): string {
    let out = text;
    for (const s of this.secrets) {
      if (out.includes(s)) out = out.split(s).join(MASK);
    }
    for (const [re, rep] of PATTERNS) out = out.replace(re, rep);
    return out;
  }

  /** Redacts every string inside a JSON-like value (a copy; the input is untouched). */
  redactDeep<T>(value: T): T {
    return redactValue(value, this, new WeakSet()) as T;
  }
}

function redactValue(value: unknown, r: Redactor, seen: WeakSet<object>): unknown {
  if (typeof value === 'string') return r.redact(value);
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, r, seen));
  if (value instanceof Error) {
    return { name: value.name, message: r.redact(value.message), stack: value.stack ? r.redact(value.stack) : undefined };
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = /^(password|token|accessToken|serviceRoleKey|apikey|authorization)$/i.test(k) && typeof v === 'string' ? MASK : redactValue(v, r, seen);
  }
  return out;
}

/** A process-wide redactor: secrets are registered once, when the configuration is loaded. */
export const redactor = new Redactor();

export function redact(text: string): string {
  return redactor.redact(text);
}
