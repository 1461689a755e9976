/**
 * The `damselfly` command line: one file per command, registered here. Errors become messages
 * and exit codes in `common.ts` only. The same executable is a drop-in for virtiofsd (no
 * subcommand, virtiofsd's options) and for nydusd's virtio-fs daemon (`virtiofs --apisock …
 * --sock …`); `dispatch.ts` tells the three apart.
 */
import { Command, Option } from 'commander';
import { LOG_LEVELS } from '../base/index.js';
import * as buildCmd from './build.js';
import * as cacheCmd from './cache.js';
import * as convertCmd from './convert.js';
import * as checkCmd from './check.js';
import { parseLogLevel, setupLogger } from './common.js';
import { cliMode } from './dispatch.js';
import * as inspectCmd from './inspect.js';
import * as exportCmd from './export.js';
import * as mountCmd from './mount.js';
import { runNydusd } from './nydusd-compat.js';
import * as passthroughCmd from './passthrough.js';
import * as patternCmd from './pattern.js';
import * as unpackCmd from './unpack.js';
import * as virtiofsCmd from './virtiofs.js';
import { passthroughFactory, runVirtiofsd } from './virtiofsd-compat.js';
import { setFlagsFromString } from 'node:v8';

// undici parses HTTP with llhttp compiled to WebAssembly. V8 compiles it at once with its baseline
// compiler (Liftoff) and, once the parser is hot, again with TurboFan on a background thread:
// ~0.3 s of CPU (perf: ExecuteTurbofanWasmCompilation) in the first second of a daemon that
// fetches from a registry, which is when the container it serves starts on the same cores. The
// baseline code parses as fast for this traffic (a 68 MB blob GET: 0.61 s of main-thread CPU,
// 0.65 s with TurboFan). These flags are read when a module is compiled, which happens later.
setFlagsFromString('--no-wasm-dynamic-tiering');
setFlagsFromString('--no-wasm-tier-up');

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

if (process.argv.includes('--print-capabilities')) {
  // As vhost-user backends do: print the capabilities and exit, ignoring every other argument.
  virtiofsCmd.printCapabilities();
} else {
  const program = createProgram();
  const mode = cliMode(process.argv.slice(2), program.commands.map((c) => c.name()));
  if (mode.mode === 'virtiofsd') {
    process.exit(await runVirtiofsd(mode.argv, { passthrough: passthroughFactory }));
  } else if (mode.mode === 'nydusd') {
    process.exit(await runNydusd(mode.argv, { passthrough: passthroughFactory, ...(mode.logLevel ? { logLevel: mode.logLevel } : {}) }));
  } else {
    await program.parseAsync(process.argv);
  }
}
