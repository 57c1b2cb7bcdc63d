/**
 * `hybrid-backup daemon`: runs the service in the foreground until a signal.
 * SIGTERM/SIGINT stop it cleanly (exit 0); a second one forces an exit (1). SIGHUP reloads the
 * configuration. A last timer makes sure a stuck stop still exits.
 */
import { App } from '../app.js';
import { loadConfig } from '../config/load.js';
import { toHbError } from '../domain/errors.js';
import { sourceConnInfo } from '../pg/connection.js';
import { Service } from './service.js';

export interface DaemonResult {
  /** Set when the service could not start. */
  error?: ReturnType<typeof toHbError>;
}

/** Starts the service; resolves only when it failed to start (the process exits on signals). */
export async function runDaemon(opts: { configFile?: string; version: string; json?: boolean; launchedByNpm?: boolean }): Promise<DaemonResult> {
  let app: App;
  try {
    const config = loadConfig({ configFile: opts.configFile });
    // A service with nothing to back up would say ok every day about nothing.
    sourceConnInfo(config.databaseUrl, config.environment.libpq);
    app = await App.open(config, { consoleLevel: 'info', consoleJson: opts.json });
  } catch (e) {
    return { error: toHbError(e) };
  }
  const log = app.logs.channel('backup');
  for (const r of app.ledger.recovered) log.warn(`run ${r.runId} (${r.job}) of process ${r.pid ?? '?'} was left unfinished: marked interrupted`);
  const service = new Service(app, { configFile: opts.configFile, version: opts.version });
  try {
    await service.start();
  } catch (e) {
    await app.close();
    return { error: toHbError(e) };
  }

  let signals = 0;
  const onStop = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      log.warn(`${sig} again: forcing exit now`);
      process.exit(1);
    }
    log.info(`${sig} received`);
    const grace = service.shutdownGraceMs(); // the reloaded configuration's, after a SIGHUP
    // The last word: whatever hangs, the process ends.
    setTimeout(() => process.exit(1), grace + 30_000).unref();
    service.stop().then(
      () => process.exit(0),
      (e) => {
        // eslint-disable-next-line no-console
        console.error(`hybrid-backup: stopping failed: ${(e as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  // Started by `npm start`: npm forwards a stop to us (the script execs node), but an npm killed
  // outright cannot; a service left running with no parent is one nobody means to run.
  if (opts.launchedByNpm) {
    const parent = process.ppid;
    const watch = setInterval(() => {
      if (process.ppid === parent) return;
      clearInterval(watch);
      log.warn(`the npm process (pid ${parent}) that started the service is gone: stopping`);
      onStop('SIGTERM');
    }, 1000);
    watch.unref();
  }
  process.on('SIGHUP', () => {
    log.info('SIGHUP received: reloading the configuration');
    service.reload();
  });
  process.on('unhandledRejection', (e) => log.error(`unhandled rejection (a bug): ${(e as Error)?.stack ?? e}`));
  process.on('uncaughtException', (e) => {
    log.error(`uncaught exception (a bug), exiting: ${e.stack ?? e}`);
    void app.logs.close().finally(() => process.exit(1));
  });
  return new Promise<DaemonResult>(() => {});
}
