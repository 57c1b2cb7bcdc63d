/**
 * The age key strings (https://age-encryption.org/v1): X25519 recipients (`age1…`) and identities
 * (`AGE-SECRET-KEY-1…`) in Bech32, checked and decoded without node:crypto — the configuration's
 * check of `encryption.ageRecipients` runs at every CLI start, and loading node:crypto costs ~10 ms
 * of it. The keys' cryptography is in age.ts.
 */
import { HbError } from '../domain/errors.js';

export const RECIPIENT_HRP = 'age';
export const IDENTITY_HRP = 'age-secret-key-';
/** Where the decrypting side's identities come from, for hints. */
export const IDENTITY_SOURCE = 'HYBRID_BACKUP_AGE_IDENTITY_FILE';
// ---------------------------------------------------------------------------------------------
// Bech32 (BIP 173), as age uses it: no length limit, one case throughout.

const BECH32_CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const BECH32_GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function bech32Polymod(values: readonly number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= BECH32_GENERATOR[i]!;
  }
  return chk;
}

function bech32HrpExpand(hrp: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) >>> 5);
  out.push(0);
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) & 31);
  return out;
}

/** Regroups bits (8 → 5 with padding; 5 → 8 refusing non-zero padding); null when invalid. */
function convertBits(data: ArrayLike<number>, from: number, to: number, pad: boolean): number[] | null {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  const maxv = (1 << to) - 1;
  for (let i = 0; i < data.length; i++) {
    acc = (acc << from) | data[i]!;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >>> bits) & maxv);
    }
    acc &= (1 << bits) - 1;
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & maxv);
  } else if (bits >= from || acc !== 0) {
    return null;
  }
  return out;
}

/** Encodes bytes as Bech32 under a lowercase human-readable part; lowercase result. */
export function bech32Encode(hrp: string, bytes: Uint8Array): string {
  const data = convertBits(bytes, 8, 5, true)!;
  const mod = bech32Polymod([...bech32HrpExpand(hrp), ...data, 0, 0, 0, 0, 0, 0]) ^ 1;
  let out = `${hrp}1`;
  for (const d of data) out += BECH32_CHARSET[d];
  for (let i = 0; i < 6; i++) out += BECH32_CHARSET[(mod >>> (5 * (5 - i))) & 31];
  return out;
}

/** Decodes a Bech32 string: its lowercase human-readable part and bytes, or why it is not valid. */
function bech32Decode(s: string): { hrp: string; bytes: Buffer } | string {
  if (s !== s.toLowerCase() && s !== s.toUpperCase()) return 'it mixes upper and lower case';
  const lower = s.toLowerCase();
  const sep = lower.lastIndexOf('1');
  if (sep < 1 || sep + 7 > lower.length) return 'it is not Bech32 (no separator or too short)';
  const hrp = lower.slice(0, sep);
  for (let i = 0; i < hrp.length; i++) {
    const c = hrp.charCodeAt(i);
    if (c < 33 || c > 126) return 'it has a character that Bech32 does not allow';
  }
  const data: number[] = [];
  for (const ch of lower.slice(sep + 1)) {
    const v = BECH32_CHARSET.indexOf(ch);
    if (v < 0) return `it has a character that Bech32 does not allow`;
    data.push(v);
  }
  if (bech32Polymod([...bech32HrpExpand(hrp), ...data]) !== 1) return 'its checksum is wrong (a mistyped or cut character?)';
  const bytes = convertBits(data.slice(0, -6), 5, 8, false);
  if (!bytes) return 'its data has non-zero padding';
  return { hrp, bytes: Buffer.from(bytes) };
}

/** Shortens a string for a message: a recipient is public, but a pasted paragraph is not useful. */
export function quoteShort(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 77)}...` : s);
}

export const RECIPIENT_HINT = 'an age X25519 recipient is the public key printed by `age-keygen` (or `age-keygen -y <identity file>`): "age1" and 58 more characters';

export function decodeRecipient(s: string): Buffer {
  const text = s.trim();
  if (/^AGE-(SECRET-KEY|PLUGIN)-/i.test(text)) {
    // Never echoed: it is a secret.
    throw new HbError('config-invalid', 'an age secret key was given where a recipient (a public key, age1…) belongs', 'keep the secret key (AGE-SECRET-KEY-1…) only where backups are decrypted, and give its public key here: `age-keygen -y <identity file>` prints it');
  }
  const invalid = (why: string) => new HbError('config-invalid', `the age recipient ${quoteShort(text)} is not valid: ${why}`, RECIPIENT_HINT);
  if (text.startsWith('ssh-')) throw invalid('SSH keys are not supported, only X25519 recipients (age1…)');
  const got = bech32Decode(text);
  if (typeof got === 'string') throw invalid(got);
  if (got.hrp !== RECIPIENT_HRP) {
    const kind = got.hrp === 'age1pq' ? 'a post-quantum recipient' : got.hrp.startsWith('age1') ? `a plugin recipient (${got.hrp.slice(4)})` : 'not an age recipient';
    throw invalid(`it is ${kind}; only X25519 recipients (age1…) are supported`);
  }
  if (text !== text.toLowerCase()) throw invalid('it must be lowercase');
  if (got.bytes.length !== 32) throw invalid(`it holds ${got.bytes.length} bytes, not the 32 of an X25519 key`);
  return got.bytes;
}

/** `where` names the identity in messages (never the secret itself): "line 3 of /etc/…". */
export function decodeIdentity(s: string, where = 'the age identity'): Buffer {
  const text = s.trim();
  const invalid = (why: string) =>
    new HbError('config-invalid', `${where} is not valid: ${why}`, `an age identity is the secret key line printed by \`age-keygen\`: "AGE-SECRET-KEY-1" and 58 more characters (${IDENTITY_SOURCE} names the file holding it)`);
  const got = bech32Decode(text);
  if (typeof got === 'string') throw invalid(got);
  if (got.hrp !== IDENTITY_HRP) {
    const kind = got.hrp === 'age-secret-key-pq-' ? 'a post-quantum identity' : got.hrp.startsWith('age-plugin-') ? 'a plugin identity' : 'not an AGE-SECRET-KEY-1 identity';
    throw invalid(`it is ${kind}; only X25519 identities are supported`);
  }
  if (text !== text.toUpperCase()) throw invalid('it must be uppercase');
  if (got.bytes.length !== 32) throw invalid(`it holds ${got.bytes.length} bytes, not the 32 of an X25519 key`);
  return got.bytes;
}

/**
 * Checks an X25519 recipient (`age1…`, as `age-keygen` prints it) and returns it in canonical form.
 * Throws HbError `config-invalid` naming what is wrong (checksum, case, an unsupported kind such
 * as a post-quantum, plugin or SSH recipient).
 */
export function parseRecipient(s: string): string {
  return bech32Encode(RECIPIENT_HRP, decodeRecipient(s));
}
