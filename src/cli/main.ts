#!/usr/bin/env node
/**
 * The `ttt-curriculum` command. Stage-config overrides are written `--section.field=value`
 * (e.g. `--training.steps=100`) and apply to `train`, `start`, `demo` and `dataset synth`.
 * One file per command in ./commands, in the order of `--help` and of the README's table.
 */
import { Command } from 'commander';
import { type Overrides, parseCliOverrides } from '../config/load';
import { isUserError } from '../errors';
import { logger } from '../log';
import * as cancel from './commands/cancel';
import * as convert from './commands/convert';
import * as dataset from './commands/dataset';
import * as demo from './commands/demo';
import * as pause from './commands/pause';
import * as plot from './commands/plot';
import * as resume from './commands/resume';
import * as server from './commands/server';
import * as start from './commands/start';
import * as status from './commands/status';
import * as train from './commands/train';
import * as until from './commands/until';
import * as watch from './commands/watch';
import * as worker from './commands/worker';
import type { Register } from './common';

const COMMANDS: Register[] = [
  worker.register,
  start.register,
  status.register,
  watch.register,
  plot.register,
  pause.register,
  resume.register,
  cancel.register,
  until.register,
  train.register,
  convert.register,
  dataset.register,
  demo.register,
  server.register,
];

export function buildProgram(cliOverrides: Overrides): Command {
  const program = new Command();
  program
    .name('ttt-curriculum')
    .description('Durable five-stage TTT-Video-DiT training curriculum on Temporal')
    .showHelpAfterError();
  for (const register of COMMANDS) register(program, { overrides: cliOverrides });
  return program;
}

/** "error: <message>" on stderr: a user error as it is, else with its cause (and logged). */
function reportError(e: unknown): void {
  const cause = (e as Error).cause as Error | undefined;
  if (isUserError(e)) process.stderr.write(`error: ${(e as Error).message}\n`);
  else if (cause?.message) process.stderr.write(`error: ${(e as Error).message}: ${cause.message}\n`);
  else {
    logger.error({ err: e }, 'command failed');
    process.stderr.write(`error: ${(e as Error).message ?? String(e)}\n`);
  }
}

async function main(): Promise<void> {
  const { overrides, rest } = parseCliOverrides(process.argv.slice(2));
  await buildProgram(overrides).parseAsync(rest, { from: 'user' });
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      reportError(e);
      process.exit(1);
    },
  );
}
