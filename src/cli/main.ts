/**
 * The `hybrid-backup` command line (commander): parses flags into each command's arguments,
 * runs the command, prints the result (human text, or exactly one JSON document with --json)
 * and maps errors to exit codes (SPEC: 0 ok, 1 failed, 2 bad usage or configuration).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command as Commander, CommanderError, Option } from 'commander';
import { App } from '../app.js';
import type { RunContext } from '../context.js';
import { type Command, parseCommandArgs } from '../commands/command.js';
import { findCommand } from '../commands/index.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { EXIT_FAILED, EXIT_USAGE, HbError, isErrorCode, toHbError } from '../domain/errors.js';
import { BACKUP_KINDS, BACKUP_STATUSES } from '../domain/types.js';
import { type DatabaseIdentity, databaseIdentity, sourceConnInfo } from '../pg/connection.js';
import { printable } from '../util/format.js';
import { redact } from '../util/redact.js';
import { runDaemon } from '../service/daemon.js';
import { TerminalReporter } from './progress.js';
import { viaSocket } from './socket-client.js';
import { readEnvironment } from '../config/environment.js';

export interface GlobalOptions {
  json?: boolean;
  config?: string;
  verbose?: boolean;
  /** Run in this process even when a service answers on the socket. */
  direct?: boolean;
}

type Outcome = { ok: true; doc: unknown; exitCode?: number } | { ok: false; error: HbError };

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

/** Writes text and resolves once it is flushed (so exit codes never cut output short). */
function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((resolve) => {
    if (!stream.write(text)) stream.once('drain', resolve);
    else resolve();
  });
}

/** One line: the message, and the hint when there is one. */
export function errorLine(e: HbError): string {
  return `hybrid-backup: ${printable(redact(e.message))}${e.hint ? ` (hint: ${printable(redact(e.hint))})` : ''}`;
}

async function printError(e: HbError, json: boolean): Promise<number> {
  if (json) await write(process.stdout, `${JSON.stringify({ error: JSON.parse(redact(JSON.stringify(e.toJSON()))) }, null, 2)}\n`);
  else await write(process.stderr, `${errorLine(e)}\n`);
  if (e.code === 'internal' && e.cause instanceof Error && readEnvironment().debug) await write(process.stderr, `${redact(e.cause.stack ?? '')}\n`);
  return e.exitCode;
}

/** Loads the configuration and opens the app; errors here are usage/config errors (exit 2). */
async function runInProcess(cmd: Command, rawArgs: unknown, g: GlobalOptions, config: Config, reporter: TerminalReporter): Promise<Outcome> {
  let app: App | undefined;
  const abort = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      reporter.notice(`${sig} received: stopping ${cmd.name} cleanly (again to force)`);
      abort.abort();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const args = parseCommandArgs(cmd, rawArgs);
    // A backup of nothing in particular is refused before anything is created or recorded.
    if (cmd.isBackup) sourceConnInfo(config.databaseUrl, config.environment.libpq);
    app = await App.open(config, { consoleLevel: g.verbose ? 'debug' : 'silent', recoverLedger: !!cmd.recoversLedger, readOnlyOnFullDisk: !!cmd.worksOnFullDisk });
    if (app.ledger.readOnlyCopy) reporter.notice(app.ledger.readOnlyCopy);
    for (const r of app.ledger.recovered) reporter.notice(`run ${r.runId} (${r.job}) was left running by process ${r.pid ?? '?'}, which is gone: marked interrupted${r.removed.length ? `, removed ${r.removed.join(', ')}` : ''}`);
    const ctx = app.context('cli', { reporter, signal: abort.signal });
    const doc = await cmd.run(ctx, args);
    return { ok: true, doc };
  } catch (e) {
    return { ok: false, error: toHbError(e) };
  } finally {
    reporter.clear();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await app?.close();
  }
}

/**
 * The database this caller means (its DATABASE_URL or libpq variables), for the service to check
 * against the one it protects; undefined when the caller names none (the service's is meant).
 * @throws HbError `database-url-invalid` when the caller's string cannot be parsed
 */
function callerDatabase(config: Config): DatabaseIdentity | undefined {
  try {
    return databaseIdentity(sourceConnInfo(config.databaseUrl, config.environment.libpq));
  } catch (e) {
    if (e instanceof HbError && e.code === 'database-not-configured') return undefined;
    throw e;
  }
}

/**
 * Sends the command to a running service; undefined when none answers on the socket.
 * Ctrl-C only disconnects: work the service started goes on.
 */
async function runViaService(cmd: Command, rawArgs: unknown, config: Config, reporter: TerminalReporter): Promise<Outcome | undefined> {
  const onSignal = () => {
    reporter.notice(`disconnecting; the service carries on with ${cmd.name}`);
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  try {
    const database = cmd.meansDatabase ? callerDatabase(config) : undefined;
    const request = { command: cmd.name, args: (rawArgs ?? {}) as Record<string, unknown>, ...(database ? { database } : {}) };
    const replyTimeoutMs = config.socket.replyTimeoutSeconds * 1000;
    // A busy service is waited for (saying so), then, if it stays busy, the command runs here.
    const giveUpAt = Date.now() + replyTimeoutMs;
    let r = await viaSocket(config.socket.path, request, reporter, { replyTimeoutMs });
    for (let said = false; r.answered && !r.result.ok && r.result.error?.code === 'socket-busy'; ) {
      if (Date.now() > giveUpAt) {
        reporter.notice(`the service stayed busy for ${Math.round(replyTimeoutMs / 1000)} s: running ${cmd.name} in this process instead`);
        return undefined;
      }
      if (!said) reporter.notice(`the service is busy (${r.result.error.message}); waiting for a free connection…`);
      said = true;
      await new Promise((res) => setTimeout(res, 500));
      r = await viaSocket(config.socket.path, request, reporter, { replyTimeoutMs });
    }
    if (!r.answered) return undefined;
    reporter.clear();
    const res = r.result;
    if (res.ok) return { ok: true, doc: res.doc, exitCode: res.exitCode };
    const code = res.error && isErrorCode(res.error.code) ? res.error.code : 'socket-error';
    return { ok: false, error: new HbError(code, res.error?.message ?? 'the service reported a failure', res.error?.hint) };
  } finally {
    process.off('SIGINT', onSignal);
  }
}

/** Runs one command as the CLI does and returns the exit code. */
export async function execute(name: string, rawArgs: unknown, g: GlobalOptions): Promise<number> {
  const cmd = findCommand(name);
  const json = !!g.json;
  // monitor/sync-check: a check that could not run is UNKNOWN (3), whatever the reason
  const fail = async (e: HbError) => {
    const code = await printError(e, json);
    return cmd?.errorExitCode ?? code;
  };
  if (!cmd) return fail(new HbError('usage', `unknown command ${name}`, 'see hybrid-backup --help'));
  let config: Config;
  try {
    config = loadConfig({ configFile: g.config });
  } catch (e) {
    return fail(toHbError(e));
  }
  const reporter = new TerminalReporter(process.stderr, !json && !!process.stderr.isTTY);
  let outcome: Outcome | undefined;
  if (cmd.configOnly) {
    try {
      outcome = { ok: true, doc: await cmd.run({ config } as RunContext, parseCommandArgs(cmd, rawArgs)) };
    } catch (e) {
      outcome = { ok: false, error: toHbError(e) };
    }
  } else if (!g.direct) {
    try {
      outcome = await runViaService(cmd, rawArgs, config, reporter);
    } catch (e) {
      reporter.clear();
      return fail(toHbError(e));
    }
  }
  outcome ??= await runInProcess(cmd, rawArgs, g, config, reporter);
  if (!outcome.ok) return fail(outcome.error);
  if (json) await write(process.stdout, `${JSON.stringify(outcome.doc, null, 2)}\n`);
  // What came from outside (descriptions, errors, names) cannot drive the terminal: controls are shown escaped.
  else await write(process.stdout, `${printable(cmd.render(outcome.doc, { timeZone: config.timezone, now: Date.now() }), true)}\n`);
  return outcome.exitCode ?? cmd.exitCode?.(outcome.doc) ?? 0;
}

function common(c: Commander): Commander {
  return c
    .option('--json', 'print exactly one JSON document on stdout')
    .option('--config <file>', 'configuration file (default config/hybrid-backup.json, or HYBRID_BACKUP_CONFIG)')
    .option('-v, --verbose', 'log progress details to stderr')
    .option('--direct', 'run in this process even when a service answers on the control socket');
}

const intArg = (v: string) => (/^\d+$/.test(v) ? Number(v) : Number.NaN);

/** Builds the commander program; `run` receives the command name, its raw arguments and the global options. */
export function buildProgram(run: (name: string, args: unknown, g: GlobalOptions) => Promise<number>, setExit: (code: number) => void): Commander {
  const program = new Commander('hybrid-backup')
    .description('Two-layer backups for a PostgreSQL / Supabase database: local pg_dump backups checked every day, and a watch on Supabase\'s own backups.')
    .version(packageVersion(), '-V, --version')
    .exitOverride();
  const act = (name: string, toArgs: (...a: any[]) => unknown) => async (...a: any[]) => {
    const cmd = a[a.length - 1] as Commander;
    setExit(await run(name, toArgs(...a.slice(0, -1)), cmd.opts() as GlobalOptions));
  };

  common(program.command('manual').argument('[description...]', 'what this backup is for (optional)'))
    .description('take a local backup now (kind manual)')
    .action(act('manual', (d: string[]) => ({ description: d.length ? d.join(' ') : undefined })));

  common(program.command('pre-change').argument('[description...]', 'what is about to change (1-500 characters, required)'))
    .description('take a backup before a risky change; exits 0 only once the file is durable and recorded')
    .addHelpText('after', '\nExample, in a migration script:\n  npm run backup:pre-change "Add orders.discount column" && npm run migrate')
    .action(act('pre-change', (d: string[]) => ({ description: d.length ? d.join(' ') : undefined })));

  common(program.command('list'))
    .description('list backups, newest first')
    .addOption(new Option('--status <statuses>', `only these statuses, comma-separated (${BACKUP_STATUSES.join(', ')})`))
    .addOption(new Option('--kind <kind>', 'only this kind').choices([...BACKUP_KINDS]))
    .option('--limit <n>', 'at most n backups (default: the newest 100 on screen, every one with --json)', intArg)
    .option('--all', 'every backup, however many')
    .action(
      act('list', (o: { status?: string; kind?: string; limit?: number; all?: boolean; json?: boolean }) => ({
        status: o.status?.split(',').map((s) => s.trim()),
        kind: o.kind,
        limit: o.limit,
        // a program reading --json gets the whole ledger unless it asks for less
        all: !!o.all || (!!o.json && o.limit === undefined),
      })),
    );

  common(program.command('verify').argument('[which]', 'latest, all, or a backup id', 'latest'))
    .description('re-hash backup files and compare them with the ledger; exit 1 if any does not match')
    .action(act('verify', (which: string) => ({ which })));

  common(program.command('restore').argument('<backup>', 'a backup id, or latest'))
    .description('restore a backup into a database: checksum first, then psql in one transaction')
    .requiredOption('--target <url>', 'connection string of the database to restore into')
    .option('--yes', 'allow restoring into the database the backup was taken from')
    .option('--create', 'create the target database if it does not exist')
    .addOption(new Option('--from <where>', 'restore the local file, or an offsite copy (downloaded, decrypted, checked); works on a fresh install with an empty BACKUP_DIR').choices(['local', 'offsite']).default('local'))
    .option('--offsite-target <name>', 'with --from offsite: the target to restore from (default: the newest copy in any configured target)')
    .addHelpText(
      'after',
      '\nExamples:\n  hybrid-backup restore latest --target postgresql://postgres@127.0.0.1:5432/app_copy --create\n  hybrid-backup restore latest --from offsite --offsite-target b2 --target postgresql://postgres@127.0.0.1:5432/app --create   (the server is gone)',
    )
    .action(
      act('restore', (backup: string, o: { target: string; yes?: boolean; create?: boolean; from: string; offsiteTarget?: string }) => ({
        backup,
        target: o.target,
        yes: !!o.yes,
        create: !!o.create,
        from: o.from,
        ...(o.offsiteTarget !== undefined ? { offsiteTarget: o.offsiteTarget } : {}),
      })),
    );

  common(program.command('restore-test').argument('[which]', 'a backup id, or latest', 'latest'))
    .description('restore drill: restore a backup on a throwaway PostgreSQL of its own (or RESTORE_TEST_DATABASE_URL\'s server), compare rows, data, sequences and the catalog with what the backup recorded, remove it; exit 1 when anything differs')
    .option('--from <where>', 'local (the file in BACKUP_DIR), offsite (the newest copy in any target) or offsite:<target>: the copy is downloaded, decrypted and checked first', 'local')
    .action(act('restore-test', (which: string, o: { from: string }) => ({ which, from: o.from })));

  common(program.command('offsite-sync'))
    .description('upload now, to every offsite target, every ok backup that lacks a good copy there (normally done after each backup); exit 1 if any upload fails')
    .action(act('offsite-sync', () => ({})));

  common(program.command('offsite-list'))
    .description('what the offsite targets hold, newest first, read from the targets alone (each copy\'s recovery kit): no ledger needed; exit 1 when a kit cannot be read')
    .option('--target <name>', 'only this target (default: every configured one)')
    .action(act('offsite-list', (o: { target?: string }) => (o.target !== undefined ? { target: o.target } : {})));

  common(program.command('runs'))
    .description('the ledger\'s run history, newest first')
    .option('--since <duration>', 'only runs started within this duration (24h, 7d) or since this time')
    .option('--job <name>', 'only runs of this job (backup, prune, monitor, supabase-poll, restore-drill, restore, verify)')
    .option('--limit <n>', 'at most n runs (default 100)', intArg)
    .action(act('runs', (o: { since?: string; job?: string; limit?: number }) => ({ since: o.since, job: o.job, limit: o.limit })));

  common(program.command('config'))
    .description('which configuration file is in force (looked for in: --config, HYBRID_BACKUP_CONFIG, /etc/hybrid-backup/hybrid-backup.json, the install directory\'s config/, the working directory\'s config/) and every effective value, with where it came from; secrets masked')
    .action(act('config', () => ({})));

  common(program.command('ledger-rebuild'))
    .description('re-create the ledger\'s backups from the .meta.json sidecars in the backup directory, re-hashing each file (ok, corrupt or missing); an unreadable ledger is moved aside under a dated name first, never deleted; exit 1 when a file does not match or is gone')
    .option('--from-offsite <target>', 'from the recovery kits in this offsite target instead (a new server): backups whose file is not here are added as missing, restorable with --from offsite')
    .action(act('ledger-rebuild', (o: { fromOffsite?: string }) => (o.fromOffsite !== undefined ? { fromOffsite: o.fromOffsite } : {})));

  common(program.command('prune'))
    .description('apply retention: delete ok backups past retention.days (pre-change: retention.preChangeDays), never the newest retention.minKeep ok ones or pinned ones; never while the newest scheduled backup failed')
    .option('--dry-run', 'show what would be deleted; change nothing')
    .option('--as-of <time>', 'plan as if it were this ISO-8601 time (planning only: implies --dry-run)')
    .action(act('prune', (o: { dryRun?: boolean; asOf?: string }) => ({ dryRun: !!o.dryRun, asOf: o.asOf })));

  common(program.command('pin').argument('<id>', 'backup id'))
    .description('keep a backup whatever its age; retention never deletes a pinned backup')
    .action(act('pin', (id: string) => ({ id })));

  common(program.command('unpin').argument('<id>', 'backup id'))
    .description('let retention treat a pinned backup normally again')
    .action(act('unpin', (id: string) => ({ id })));

  common(program.command('schedule'))
    .description('the scheduled jobs: cron expression, next run, last result')
    .action(act('schedule', () => ({})));

  common(program.command('supabase-status'))
    .description('poll the Management API now and show the managed layer: PITR and its window, newest backup and its age, failed backups, project health')
    .action(act('supabase-status', () => ({})));

  common(program.command('supabase-config'))
    .description('check the Supabase project against supabase.policy: each item met or not, with the dashboard path or API call that fixes it; exit 0 only when the policy is met')
    .option('--apply-schedule', 'move the daily managed backup to 12 hours from the local daily backup (Supabase allows 3 changes a day)')
    .action(act('supabase-config', (o: { applySchedule?: boolean }) => ({ applySchedule: !!o.applySchedule })));

  common(program.command('supabase-restore-pitr'))
    .description('restore the WHOLE Supabase project to a time inside the point-in-time recovery window; the project is unavailable meanwhile')
    .requiredOption('--to <time>', 'the time to go back to (ISO-8601, e.g. 2026-11-24T09:30:00Z)')
    .option('--confirm <project-ref>', 'the project ref, to confirm you mean it')
    .action(act('supabase-restore-pitr', (o: { to: string; confirm?: string }) => ({ to: o.to, confirm: o.confirm })));

  common(program.command('monitor'))
    .description('check both layers now, one check per concern; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (monitoring-plugin convention)')
    .action(act('monitor', () => ({})));

  common(program.command('sync-check'))
    .description('one timeline of both layers over the retention window: the gaps where no layer could restore to, and the recovery point; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN')
    .action(act('sync-check', () => ({})));

  common(program.command('report'))
    .description('a detailed report: Markdown (stdout and <backupDir>/reports/hybrid-report-<date>.md), JSON, or one self-contained HTML page')
    .addOption(new Option('--format <format>', 'md, html or json').choices(['md', 'html', 'json']).default('md'))
    .option('--out <file>', 'write the report here instead of <backupDir>/reports/')
    .action(act('report', (o: { format: string; out?: string }) => ({ format: o.format, out: o.out ? path.resolve(o.out) : undefined })));

  program
    .command('daemon')
    .description('run the resident service in the foreground: schedules, retention, and the control socket (npm start)')
    .option('--config <file>', 'configuration file (default config/hybrid-backup.json, or HYBRID_BACKUP_CONFIG)')
    .option('--json', 'log to stderr as one JSON object per line, and print a start-up error as {error}')
    .action(async (o: { config?: string; json?: boolean }) => {
      const r = await runDaemon({ configFile: o.config, version: packageVersion(), json: !!o.json, launchedByNpm: readEnvironment().launchedByNpm });
      if (r.error) setExit(await printError(r.error, !!o.json));
    });

  return program;
}

/** The CLI entry: parses argv, runs, exits with the command's code. */
export async function main(argv: string[]): Promise<void> {
  process.umask(0o077);
  let code = 0;
  const json = argv.includes('--json');
  const program = buildProgram(execute, (c) => (code = c));
  // Every command's usage errors look like the product's own: one line, the name, a hint.
  const outputError = (str: string, w: (s: string) => void) => {
    if (!json) w(`hybrid-backup: ${str.replace(/^error: /, '').trim()} (hint: see hybrid-backup ${sub ?? ''}${sub ? ' ' : ''}--help)\n`);
  };
  const sub = program.commands.find((c) => argv.slice(2).includes(c.name()))?.name();
  for (const c of [program, ...program.commands]) c.configureOutput({ outputError });
  if (argv.length <= 2) {
    // nothing asked: the usage, on stderr, and the exit code of bad usage (a script that forgot its argument must not pass)
    process.stderr.write(program.helpInformation());
    process.exit(EXIT_USAGE);
  }
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') {
        code = 0;
      } else {
        // a monitoring plugin called wrongly is UNKNOWN, not WARNING/CRITICAL
        const sub = program.commands.find((c) => argv.slice(2).includes(c.name()));
        code = (sub && findCommand(sub.name())?.errorExitCode) ?? EXIT_USAGE;
        if (json) await write(process.stdout, `${JSON.stringify({ error: { code: 'usage', message: e.message.replace(/^error: /, ''), hint: 'see hybrid-backup --help' } }, null, 2)}\n`);
      }
    } else {
      const err = toHbError(e);
      code = await printError(err, json);
      if (err.code === 'internal') code = EXIT_FAILED;
    }
  }
  process.exit(code);
}
