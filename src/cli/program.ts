/**
 * The `damselfly` subcommands (commander): one file per command, registered here. Errors become
 * messages and exit codes in `common.ts` only.
 */
import { Command, Option } from 'commander';
import { LOG_LEVELS } from '../base/index.js';
import { parseLogLevel, setupLogger } from './common.js';
import { SUBCOMMANDS } from './dispatch.js';

/**
 * Each command's module, loaded only when needed: a daemon started in front of a waiting
 * container (`mount`, `virtiofs`) does not load the builder, the converter or the tools.
 */
const COMMANDS: Record<string, () => Promise<{ register(program: Command): void }>> = {
  build: () => import('./build.js'),
  inspect: () => import('./inspect.js'),
  check: () => import('./check.js'),
  unpack: () => import('./unpack.js'),
  export: () => import('./export.js'),
  mount: () => import('./mount.js'),
  passthrough: () => import('./passthrough.js'),
  virtiofs: () => import('./virtiofs.js'),
  cache: () => import('./cache.js'),
  convert: () => import('./convert.js'),
  pattern: () => import('./pattern.js'),
};

export const VERSION = '0.1.0';

/**
 * The program with the subcommands `only` names registered (the one argv names, found by
 * `dispatch.ts`; none for --version), or with every subcommand, in the order help lists them.
 */
export async function createProgram(only?: readonly string[]): Promise<Command> {
  const program = new Command('damselfly')
    .description('Lazy-loading RAFS (Nydus-compatible) container images for microVMs')
    .version(VERSION)
    .addOption(new Option('--log-level <level>', `one of ${LOG_LEVELS.join(', ')}`).argParser(parseLogLevel).default('info'))
    .addHelpText(
      'after',
      '\nAlso, with the command lines Kata and nydus-snapshotter use:\n' +
        '  damselfly --socket-path PATH --shared-dir DIR [virtiofsd options]   as virtiofsd\n' +
        '  damselfly virtiofs --apisock PATH --sock PATH [nydusd options]      as nydusd, virtio-fs\n' +
        '  damselfly fuse --mountpoint DIR [--apisock PATH] [nydusd options]   as nydusd, FUSE on the host\n',
    )
    .showHelpAfterError()
    .hook('preAction', (cmd) => {
      setupLogger(cmd.opts<{ logLevel: (typeof LOG_LEVELS)[number] }>().logLevel);
    });
  program.exitOverride((err) => {
    process.exit(err.exitCode === 1 ? 2 : err.exitCode);
  });
  const names = only ?? SUBCOMMANDS;
  const modules = await Promise.all(
    names.map((name) => {
      const load = COMMANDS[name];
      if (load === undefined) throw new Error(`no module for subcommand ${name}`);
      return load();
    }),
  );
  for (const m of modules) m.register(program);
  return program;
}
