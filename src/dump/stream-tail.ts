/**
 * The last few KiB of a stream, to check how it ended: pg_dump and pg_dumpall close with a
 * comment line (`-- PostgreSQL database dump complete`, `-- PostgreSQL database cluster dump
 * complete`) followed only by blank lines, `--` and `\unrestrict <key>`.
 */
export const TAIL_BYTES = 8192;

export const DUMP_COMPLETE = '-- PostgreSQL database dump complete';
export const CLUSTER_DUMP_COMPLETE = '-- PostgreSQL database cluster dump complete';

export class StreamTail {
  private tail: Buffer = Buffer.alloc(0);
  bytes = 0;

  /** The tail of a stream of `total` bytes that ends with `end` (its last bytes, read back from a file). */
  static ofEnd(end: Buffer, total: number): StreamTail {
    const t = new StreamTail();
    t.push(end);
    t.bytes = total;
    return t;
  }

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (chunk.length >= TAIL_BYTES) {
      this.tail = Buffer.from(chunk.subarray(chunk.length - TAIL_BYTES));
    } else {
      const merged = Buffer.concat([this.tail, chunk]);
      this.tail = merged.length > TAIL_BYTES ? merged.subarray(merged.length - TAIL_BYTES) : merged;
    }
  }

  /** Whether the stream ends with `marker` as a whole line, followed only by closing lines. */
  endsWith(marker: string): boolean {
    const text = this.tail.toString('utf8');
    const at = text.lastIndexOf(`\n${marker}\n`);
    if (at < 0) return false;
    const after = text.slice(at + marker.length + 2);
    return after.split('\n').every((l) => l === '' || l === '--' || l.startsWith('\\unrestrict '));
  }
}
