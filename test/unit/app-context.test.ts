/**
 * src/app.ts context(): the signal a command runs under serves all of its concurrent work, so
 * Node must not call a few dozen listeners on it a memory leak on the operator's terminal (a
 * restore of Storage files from a target printed MaxListenersExceededWarning).
 */
import { getMaxListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { App } from '../../src/app.js';
import { loadConfig } from '../../src/config/load.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'hb-app-ctx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('App.context', () => {
  it('lets a command signal carry the listeners of its concurrent work, given or made', async () => {
    const config = loadConfig({ env: { BACKUP_DIR: dir, DATABASE_URL: 'postgresql://postgres@127.0.0.1:5432/postgres' }, cwd: dir, systemFile: path.join(dir, 'none.json'), installDir: dir });
    const app = await App.open(config, { consoleLevel: 'silent' });
    try {
      const given = new AbortController().signal;
      expect(getMaxListeners(given)).toBe(10);
      expect(getMaxListeners(app.context('cli', { signal: given }).signal)).toBeGreaterThanOrEqual(256);
      expect(getMaxListeners(app.context('cli').signal)).toBeGreaterThanOrEqual(256);
      let warned = false;
      const onWarning = (w: Error) => (warned ||= w.name === 'MaxListenersExceededWarning');
      process.on('warning', onWarning);
      const ctx = app.context('cli');
      const off = Array.from({ length: 50 }, () => {
        const l = () => {};
        ctx.signal.addEventListener('abort', l);
        return () => ctx.signal.removeEventListener('abort', l);
      });
      await new Promise((r) => setImmediate(r));
      process.off('warning', onWarning);
      off.forEach((f) => f());
      expect(warned).toBe(false);
    } finally {
      await app.close();
    }
  });
});
