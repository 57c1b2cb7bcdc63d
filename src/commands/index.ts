/** The command registry: every command the CLI and the control socket can run. */
import { manualCommand, preChangeCommand } from './backup-commands.js';
import type { Command } from './command.js';
import { configCommand } from './config-command.js';
import { ledgerRebuildCommand, listCommand, runsCommand, verifyCommand } from './ledger-commands.js';
import { restoreTestCommand } from './drill-command.js';
import { monitorCommand, reportCommand, syncCheckCommand } from './monitor-commands.js';
import { offsiteListCommand, offsiteSyncCommand } from './offsite-command.js';
import { restoreCommand, restoreStorageCommand } from './restore-command.js';
import { pinCommand, pruneCommand, unpinCommand } from './retention-commands.js';
import { scheduleCommand } from './schedule-command.js';
import { supabaseConfigCommand, supabaseRestorePitrCommand, supabaseStatusCommand } from './supabase-commands.js';

export const COMMANDS: readonly Command<any, any>[] = [
  manualCommand,
  preChangeCommand,
  listCommand,
  verifyCommand,
  restoreCommand,
  restoreStorageCommand,
  restoreTestCommand,
  runsCommand,
  ledgerRebuildCommand,
  pruneCommand,
  pinCommand,
  unpinCommand,
  scheduleCommand,
  offsiteSyncCommand,
  offsiteListCommand,
  monitorCommand,
  syncCheckCommand,
  reportCommand,
  supabaseStatusCommand,
  supabaseConfigCommand,
  supabaseRestorePitrCommand,
  configCommand,
];

export function findCommand(name: string): Command<any, any> | undefined {
  return COMMANDS.find((c) => c.name === name);
}
