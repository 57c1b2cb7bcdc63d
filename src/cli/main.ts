/**
 * The `hybrid-backup` command line (commander): parses flags into each command's arguments,
 * runs the command, prints the result (human text, or exactly one JSON document with --json)
 * and maps errors to exit codes (SPEC: 0 ok, 1 failed, 2 bad usage or configuration).
 */
import { readFileSync } from 'node:fs';
import { Command as Commander, CommanderError, Option } from 'commander';
import type { App } from '../app.js';
import type { RunContext } from '../context.js';
import { type Command, parseCommandArgs } from '../commands/command.js';
import { COMMANDS, findCommand } from '../commands/index.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { EXIT_FAILED, EXIT_USAGE, HbError, isErrorCode, toHbError } from '../domain/errors.js';
import { type DatabaseIdentity, databaseIdentity, sourceConnInfo } from '../pg/connection.js';
import { printable } from '../util/format.js';
import { redact } from '../util/redact.js';
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

/** The version in the install directory's package.json: three up from dist/src/cli/, two up from the bundle in dist/src/. */
function packageVersion(): string {
  for (const up of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version: string };
      if (pkg.name === 'hybrid-backup') return pkg.version;
    } catch {
      // not here: the next candidate
    }
  }
  return 'unknown';
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
    // The engine (ledger, logs, the commands' work) is loaded only to run here, not to ask the service.
    const { App } = await import('../app.js');
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
 * against the one it protects; undefined when the caller names none (a restore or drill then means
 * the service's; a backup is refused before this, see execute()).
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
      // A backup of no database in particular is refused here as in this process, service or not:
      // a migration script whose DATABASE_URL did not reach it must not pass its gate on a backup
      // of whatever the service protects.
      if (cmd.isBackup) sourceConnInfo(config.databaseUrl, config.environment.libpq);
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
    .option('--config <file>', 'configuration file (default: HYBRID_BACKUP_CONFIG, else the first of /etc/hybrid-backup/hybrid-backup.json, the install directory\'s config/ and the working directory\'s config/ that exists; see: hybrid-backup config)')
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
  for (const cmd of COMMANDS) {
    const spec = cmd.cli ?? {};
    const c = common(program.command(cmd.name)).description(cmd.summary);
    for (const a of spec.arguments ?? []) c.argument(a.name, a.description, a.default);
    for (const o of spec.options ?? []) {
      const opt = new Option(o.flags, o.description);
      if (o.choices) opt.choices([...o.choices]);
      if (o.default !== undefined) opt.default(o.default);
      if (o.int) opt.argParser(intArg);
      if (o.required) opt.makeOptionMandatory();
      c.addOption(opt);
    }
    if (spec.help) c.addHelpText('after', `\n${spec.help}`);
    c.action(async (...a: unknown[]) => {
      const self = a[a.length - 1] as Commander;
      const positionals = a.slice(0, -2);
      const opts = self.opts();
      setExit(await run(cmd.name, spec.toArgs ? spec.toArgs(positionals, opts) : {}, opts as GlobalOptions));
    });
  }

  program
    .command('daemon')
    .description('run the resident service in the foreground: schedules, retention, and the control socket (npm start)')
    .option('--config <file>', 'configuration file (default: HYBRID_BACKUP_CONFIG, else the first of /etc/hybrid-backup/hybrid-backup.json, the install directory\'s config/ and the working directory\'s config/ that exists; see: hybrid-backup config)')
    .option('--json', 'log to stderr as one JSON object per line, and print a start-up error as {error}')
    .action(async (o: { config?: string; json?: boolean }) => {
      const { runDaemon } = await import('../service/daemon.js');
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
