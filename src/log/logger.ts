/**
 * Logging (winston): JSON lines to files in the backup directory, readable lines on stderr.
 * Every record passes through the redactor first, so connection passwords and tokens are never
 * written, whatever a message or its metadata contains.
 *
 * Files: `backup.log` (the local layer and the service), `supabase-backup.log` and
 * `hybrid-monitor.log` (channels of those jobs); see {@link Logs.channel}.
 */
import { constants } from 'node:fs';
import path from 'node:path';
import winston from 'winston';
import { redactor } from '../util/redact.js';

export type Level = 'error' | 'warn' | 'info' | 'debug';
export type Logger = winston.Logger;

export type Channel = 'backup' | 'supabase' | 'monitor';

const CHANNEL_FILES: Record<Channel, string> = {
  backup: 'backup.log',
  supabase: 'supabase-backup.log',
  monitor: 'hybrid-monitor.log',
};

const scrub = winston.format((info) => {
  for (const key of Object.keys(info)) {
    const v = (info as Record<string, unknown>)[key];
    (info as Record<string, unknown>)[key] = typeof v === 'string' ? redactor.redact(v) : redactor.redactDeep(v);
  }
  return info;
});

const consoleLine = winston.format.printf((info) => {
  const { level, message, timestamp: _t, channel: _c, ...meta } = info as Record<string, unknown>;
  const extras = Object.entries(meta)
    .filter(([k, v]) => v !== undefined && typeof k === 'string' && !k.startsWith('Symbol('))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `hybrid-backup ${level}: ${String(message)}${extras ? ` (${extras})` : ''}`;
});

export interface LogOptions {
  dir: string;
  fileLevel: Level;
  /** Level for stderr; 'silent' for none. */
  consoleLevel: Level | 'silent';
  /** Console lines as one JSON object each (for log shippers), instead of text. */
  consoleJson?: boolean;
}

/** The loggers of one process: one per channel, sharing the console. */
export class Logs {
  private readonly loggers = new Map<Channel, Logger>();
  private fileErrorShown = false;

  constructor(private readonly opts: LogOptions) {}

  channel(ch: Channel): Logger {
    let l = this.loggers.get(ch);
    if (!l) {
      const transports: winston.transport[] = [
        new winston.transports.File({
          filename: path.join(this.opts.dir, CHANNEL_FILES[ch]),
          level: this.opts.fileLevel,
          maxsize: 20 * 1024 * 1024,
          maxFiles: 5,
          tailable: true,
          format: winston.format.combine(scrub(), winston.format.timestamp(), winston.format.json()),
          // appended to, never through a link (a backup.log link must not make us append elsewhere)
          options: { flags: constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, mode: 0o600 },
        }),
      ];
      if (this.opts.consoleLevel !== 'silent') {
        transports.push(
          new winston.transports.Console({
            level: this.opts.consoleLevel,
            stderrLevels: ['error', 'warn', 'info', 'debug'],
            format: this.opts.consoleJson ? winston.format.combine(scrub(), winston.format.timestamp(), winston.format.json()) : winston.format.combine(scrub(), consoleLine),
          }),
        );
      }
      l = winston.createLogger({ levels: winston.config.npm.levels, defaultMeta: { channel: ch }, transports, exitOnError: false });
      // A log file that cannot be written (a full disk) must not crash the process or hide the
      // failure being logged: say so once on stderr (the journal, under systemd) and go on.
      const onError = (e: Error) => {
        if (this.fileErrorShown) return;
        this.fileErrorShown = true;
        process.stderr.write(`hybrid-backup: cannot write the log file ${CHANNEL_FILES[ch]} in ${this.opts.dir}: ${redactor.redact(e.message)}\n`);
      };
      transports[0]!.on('error', onError);
      l.on('error', onError);
      this.loggers.set(ch, l);
    }
    return l;
  }

  /** Flushes and closes every file; safe to call twice. */
  async close(): Promise<void> {
    const all = [...this.loggers.values()];
    this.loggers.clear();
    await Promise.all(
      all.map(
        (l) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 2000);
            l.on('finish', () => {
              clearTimeout(timer);
              resolve();
            });
            l.end();
          }),
      ),
    );
  }
}
