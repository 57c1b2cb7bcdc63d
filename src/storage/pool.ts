/** Bounded concurrency: at most `limit` calls of `fn` in flight, fed from a (lazy) iterable. */
import { HbError } from '../domain/errors.js';

/**
 * Calls `fn` on every item, at most `limit` at a time, in the order given; resolves when all are
 * done. The first error thrown by `fn` stops new calls and is thrown once the running ones end
 * (so no call is left running behind the caller's back). `fn` handles the failures it can.
 */
export async function forEachLimit<T>(items: Iterable<T> | AsyncIterable<T>, limit: number, fn: (item: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const it = Symbol.asyncIterator in items ? (items as AsyncIterable<T>)[Symbol.asyncIterator]() : (items as Iterable<T>)[Symbol.iterator]();
  let failed: { e: unknown } | null = null;
  let pulling: Promise<IteratorResult<T>> | null = null;
  // One pull at a time: async generators may not be pulled concurrently.
  const next = async (): Promise<IteratorResult<T>> => {
    while (pulling) await pulling.catch(() => {});
    pulling = Promise.resolve(it.next());
    try {
      return await pulling;
    } finally {
      pulling = null;
    }
  };
  const worker = async (): Promise<void> => {
    for (;;) {
      if (failed) return;
      if (signal?.aborted) {
        failed ??= { e: new HbError('aborted', 'the operation was stopped before it finished', undefined, { cause: signal.reason }) };
        return;
      }
      const r = await next();
      if (r.done) return;
      try {
        await fn(r.value);
      } catch (e) {
        failed ??= { e };
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  if (failed) throw (failed as { e: unknown }).e;
}
