/**
 * The `damselfly` subcommands (commander): one file per command, registered here. Errors become
 * messages and exit codes in `common.ts` only.
 */
import { Command, Option } from 'commander';
import { LOG_LEVELS } from '../base/index.js';
import * as buildCmd from './build.js';
import * as cacheCmd from './cache.js';
import * as convertCmd from './convert.js';
import * as checkCmd from './check.js';
import { parseLogLevel, setupLogger } from './common.js';
import * as inspectCmd from './inspect.js';
import * as exportCmd from './export.js';
import * as mountCmd from './mount.js';
import * as passthroughCmd from './passthrough.js';
import * as patternCmd from './pattern.js';
import * as unpackCmd from './unpack.js';
import * as virtiofsCmd from './virtiofs.js';

export const VERSION = '0.1.0';

export function createProgram(): Command {
  const program = new Command('damselfly')
    .description('Lazy-loading RAFS (Nydus-compatible) container images for microVMs')
    .version(VERSION)
    .addOption(new Option('--log-level <level>', `one of ${LOG_LEVELS.join(', ')}`).argParser(parseLogLevel).default('info'))
    .showHelpAfterError()
    .hook('preAction', (cmd) => {
      setupLogger(cmd.opts<{ logLevel: (typeof LOG_LEVELS)[number] }>().logLevel);
    });
  program.exitOverride((err) => {
    process.exit(err.exitCode === 1 ? 2 : err.exitCode);
  });
  for (const cmd of [buildCmd, inspectCmd, checkCmd, unpackCmd, exportCmd, mountCmd, passthroughCmd, virtiofsCmd, cacheCmd, convertCmd, patternCmd]) cmd.register(program);
  return program;
}
