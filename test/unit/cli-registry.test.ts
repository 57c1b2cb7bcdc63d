import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { parseCommandArgs } from '../../src/commands/command.js';
import { COMMANDS } from '../../src/commands/index.js';
import { HbError } from '../../src/domain/errors.js';

/** Parses one command line as the CLI would, and returns what reaches the command. */
async function parse(argv: string[]): Promise<{ name: string; args: unknown }> {
  let got: { name: string; args: unknown } | undefined;
  const program = buildProgram(async (name, args) => ((got = { name, args }), 0), () => {});
  await program.parseAsync(['node', 'hybrid-backup', ...argv]);
  if (!got) throw new Error(`nothing ran for ${argv.join(' ')}`);
  return got;
}

/** The smallest command line a command accepts: its required arguments and options. */
function minimal(name: string): string[] {
  const cmd = COMMANDS.find((c) => c.name === name)!;
  const argv = [name];
  for (const a of cmd.cli?.arguments ?? []) if (a.name.startsWith('<')) argv.push('1');
  for (const o of cmd.cli?.options ?? []) if (o.required) argv.push(o.flags.split(' ')[0]!, o.flags.includes('<time>') ? '2026-11-24T09:30:00Z' : 'postgresql://u@127.0.0.1:1/x');
  return argv;
}

describe('the command line is built from the commands', () => {
  it('has every command of the registry, each with its own summary', () => {
    const program = buildProgram(async () => 0, () => {});
    for (const cmd of COMMANDS) {
      const c = program.commands.find((x) => x.name() === cmd.name);
      expect(c, cmd.name).toBeDefined();
      expect(c!.description()).toBe(cmd.summary);
    }
  });

  it('gives each command arguments its schema accepts, from the smallest command line', async () => {
    for (const cmd of COMMANDS) {
      const { name, args } = await parse(minimal(cmd.name));
      expect(name).toBe(cmd.name);
      try {
        parseCommandArgs(cmd, args);
      } catch (e) {
        // a value the schema refuses is fine here (e.g. a pre-change without a description);
        // an argument it does not know is not: the flag and the command disagree
        expect((e as HbError).message, cmd.name).not.toMatch(/unknown argument/);
      }
    }
  });

  it('maps flags to arguments', async () => {
    expect((await parse(['list', '--status', 'ok, failed', '--kind', 'manual', '--limit', '5'])).args).toEqual({ status: ['ok', 'failed'], kind: 'manual', limit: 5, all: false });
    expect((await parse(['list', '--json'])).args).toMatchObject({ all: true });
    expect((await parse(['pre-change', 'Add', 'orders.discount'])).args).toEqual({ description: 'Add orders.discount' });
    expect((await parse(['verify'])).args).toEqual({ which: 'latest' });
    expect((await parse(['restore', 'latest', '--target', 'postgresql://x@h/db', '--from', 'offsite', '--offsite-target', 'b2'])).args).toEqual({
      backup: 'latest',
      target: 'postgresql://x@h/db',
      yes: false,
      create: false,
      from: 'offsite',
      offsiteTarget: 'b2',
    });
    expect((await parse(['prune', '--dry-run'])).args).toEqual({ dryRun: true, asOf: undefined });
  });
});
