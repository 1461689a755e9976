/**
 * `damselfly virtiofs --apisock A --sock S …` acts as nydusd's virtio-fs daemon (Kata
 * `shared_fs = "virtio-fs-nydus"`, both runtimes): creates the vhost-user socket (state RUNNING
 * from then on) and the API socket, mounts what the command line names (`--shared-dir` or
 * `--bootstrap` at `--virtual-mountpoint`), then serves the mounts the API adds until the VMM
 * disconnects. `damselfly fuse --mountpoint M …` acts as nydusd's FUSE daemon (nydus-snapshotter's
 * fusedev mode: `fuse --thread-num N --config C --bootstrap B --mountpoint M --apisock A …`): the
 * same mount table, mounted on the host at M through /dev/fuse, served until M is unmounted; with
 * `--upgrade` it mounts nothing and waits for the API's takeover of a previous daemon's connection.
 * Options are nydusd's (`src/bin/nydusd/main.rs`); ones that cannot apply are accepted with a
 * warning, unknown ones are an error.
 */
import { openSync, rmSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { LOG_LEVELS, type LogLevel, type Logger, Metrics, UsageError, createLogger, errorMessage, readRegularFileSync } from '../base/index.js';
import { ApiServer } from '../api/index.js';
import { CONFIG_MAX_BYTES } from '../config/index.js';
// The daemon's modules themselves, not its index (which reaches the image-serving code, loaded by
// the first RAFS mount instead).
import type { PassthroughFactory } from '../daemon/mounts.js';
import { DEFAULT_NOFILE, raiseNofileLimit } from '../daemon/fd-limit.js';
import { type FailoverPolicy, NydusDaemon } from '../daemon/nydus-daemon.js';
import { nativeCodecs } from '../native/index.js';
import { parseCount } from './common.js';
import type { NydusdSubcommand } from './dispatch.js';
import { EXIT_OK, EXIT_USAGE, onStopSignals, reportError } from './exit.js';
import { READY_LINE } from './virtiofsd-compat.js';

export interface NydusdFlags {
  apisock?: string;
  config?: string;
  id?: string;
  supervisor?: string;
  logLevel?: string;
  logFile?: string;
  logRotationSize: string;
  rlimitNofile: number;
  upgrade?: boolean;
  bootstrap?: string;
  localfsDir?: string;
  sharedDir?: string;
  prefetchFiles?: string;
  virtualMountpoint: string;
  /** virtiofs: the vhost-user socket. */
  sock?: string;
  hybridMode?: boolean;
  /** fuse: where the FUSE filesystem is mounted on the host. */
  mountpoint?: string;
  failoverPolicy?: string;
  fuseThreads?: number;
  threadNum?: number;
  writable?: boolean;
}

const NYDUS_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;

/** nydusd's thread counts (`--fuse-threads`, alias `--thread-num`): 1 to 1024. */
function parseThreads(v: string): number {
  const n = parseCount(v);
  if (n < 1 || n > 1024) throw new InvalidArgumentError(`invalid thread number ${n}, valid range: [1-1024]`);
  return n;
}

/** nydusd's `virtiofs` or `fuse` subcommand with its global options. */
export function nydusdCommand(subcommand: NydusdSubcommand = 'virtiofs'): Command {
  const cmd = new Command(subcommand)
    .description(subcommand === 'virtiofs' ? 'run as nydusd\'s virtio-fs daemon (Kata shared_fs = "virtio-fs-nydus")' : "run as nydusd's FUSE daemon (nydus-snapshotter's fusedev mode)")
    .option('-A, --apisock <path>', 'the HTTP API unix socket')
    .option('-C, --config <file>', 'nydusd configuration of the --bootstrap image')
    .option('--id <id>', 'daemon id (requires --supervisor)')
    .option('--supervisor <path>', 'supervisor socket (requires --id)')
    .addOption(new Option('-l, --log-level <level>', 'log level (default: info)').choices(NYDUS_LEVELS))
    .option('-L, --log-file <file>', 'write the log to this file')
    .option('--log-rotation-size <mb>', 'log rotation size', '0')
    .option('--rlimit-nofile <n>', 'file descriptor limit (0 leaves it)', parseCount, DEFAULT_NOFILE)
    .option('--upgrade', 'fuse: take over the FUSE connection and state a previous daemon sent to the supervisor (API takeover, then start); virtiofs: ignored')
    .option('-B, --bootstrap <file>', 'a RAFS bootstrap to mount at --virtual-mountpoint')
    .option('-D, --localfs-dir <dir>', 'blob directory (localfs backend and cache) of --bootstrap')
    .option('-s, --shared-dir <dir>', 'a directory to share (passthrough) at --virtual-mountpoint')
    .option('--prefetch-files <file>', 'file listing image paths to prefetch (requires --bootstrap)')
    .option('-m, --virtual-mountpoint <path>', 'where --bootstrap or --shared-dir is mounted', '/');
  if (subcommand === 'virtiofs') {
    cmd.requiredOption('--sock <path>', 'the vhost-user socket').option('--hybrid-mode', 'accepted for compatibility (RAFS and passthrough are always both available)');
  } else {
    cmd
      .requiredOption('-M, --mountpoint <path>', 'where the FUSE filesystem is mounted')
      .addOption(new Option('--failover-policy <policy>', 'after a takeover: resend asks the kernel to send again the requests the previous daemon left unanswered (Linux 6.9); flush is not available in Linux').choices(['none', 'resend', 'flush']).default('resend'))
      .option('--fuse-threads <n>', 'accepted for compatibility, 1-1024 as nydusd checks it (requests are served concurrently on one event loop and its thread pool)', parseThreads)
      .addOption(new Option('--thread-num <n>').hideHelp().argParser(parseThreads))
      .option('--writable', 'mount the FUSE filesystem read-write (a --shared-dir is then writable)');
  }
  return cmd.allowExcessArguments(false).exitOverride();
}

/** Parses the arguments after `virtiofs` or `fuse`. Throws `UsageError`. */
export function parseNydusdArgs(argv: readonly string[], subcommand: NydusdSubcommand = 'virtiofs'): NydusdFlags {
  const cmd = nydusdCommand(subcommand);
  let err = '';
  cmd.configureOutput({ writeErr: (s) => (err += s), writeOut: (s) => process.stdout.write(s) });
  try {
    cmd.parse([...argv], { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError && (e.code === 'commander.helpDisplayed' || e.code === 'commander.help')) throw e;
    throw new UsageError(err.trim().replace(/^error: /, '') || errorMessage(e));
  }
  const f = cmd.opts<NydusdFlags>();
  if ((f.id === undefined) !== (f.supervisor === undefined)) throw new UsageError('--id and --supervisor must be given together');
  if (f.bootstrap !== undefined && f.sharedDir !== undefined) throw new UsageError("the argument '--bootstrap' cannot be used with '--shared-dir'");
  if (f.localfsDir !== undefined && f.config !== undefined) throw new UsageError("the argument '--localfs-dir' cannot be used with '--config'");
  if (f.prefetchFiles !== undefined && f.bootstrap === undefined) throw new UsageError("'--prefetch-files' requires '--bootstrap'");
  if (f.bootstrap !== undefined && f.localfsDir === undefined && f.config === undefined) throw new UsageError('both --config and --localfs-dir are missing');
  // Taking over (nydusd's failover and live upgrade) goes through the supervisor and the API.
  if (subcommand === 'fuse' && f.upgrade === true && (f.supervisor === undefined || f.apisock === undefined)) throw new UsageError('--upgrade needs --supervisor, --id and --apisock: the state and the FUSE connection come from the supervisor when the API asks for the takeover');
  return f;
}

function warnings(f: NydusdFlags): string[] {
  const w: string[] = [];
  if (f.logRotationSize !== '0') w.push('--log-rotation-size: the log is not rotated');
  if (f.upgrade === true && f.mountpoint === undefined) w.push('--upgrade: a virtio-fs daemon cannot take over a connection; starting normally');
  return w;
}

function logger(f: NydusdFlags, fallback: LogLevel | undefined): Logger {
  const level = (f.logLevel ?? fallback ?? 'info') as LogLevel;
  if (f.logFile === undefined) return createLogger(level);
  return createLogger(level, openSync(f.logFile, 'a'));
}

/** Runs nydusd mode; resolves with the exit code. */
export async function runNydusd(subcommand: NydusdSubcommand, argv: readonly string[], deps: { passthrough?: PassthroughFactory; logLevel?: LogLevel }): Promise<number> {
  let f: NydusdFlags;
  try {
    f = parseNydusdArgs(argv, subcommand);
    // damselfly's own --log-level before the subcommand comes unchecked from the dispatcher.
    if (deps.logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(deps.logLevel)) throw new UsageError(`--log-level ${deps.logLevel}: expected one of ${LOG_LEVELS.join(', ')}`);
  } catch (e) {
    if (e instanceof CommanderError) return EXIT_OK;
    process.stderr.write(`damselfly: ${errorMessage(e)}\n`);
    return EXIT_USAGE;
  }
  const log = logger(f, deps.logLevel);
  for (const w of warnings(f)) log.warn(w);
  raiseNofileLimit(f.rlimitNofile, log);
  let api: ApiServer | undefined;
  let daemon: NydusDaemon | undefined;
  let stopping = false;
  const shutdown = async (code: number, keepMount = false): Promise<never> => {
    if (!stopping) {
      stopping = true;
      await api?.close().catch(() => undefined);
      if (f.apisock !== undefined) rmSync(f.apisock, { force: true });
      await daemon?.close({ keepMount });
    }
    process.exit(code);
  };
  const takingOver = f.upgrade === true && f.mountpoint !== undefined;
  try {
    const metrics = new Metrics();
    daemon = new NydusDaemon({
      log,
      metrics,
      codecs: nativeCodecs,
      ...(f.id !== undefined ? { id: f.id } : {}),
      ...(f.supervisor !== undefined ? { supervisor: f.supervisor } : {}),
      ...(deps.passthrough !== undefined ? { passthrough: deps.passthrough } : {}),
      onExit: (keepMount) => void shutdown(EXIT_OK, keepMount),
      failoverPolicy: (f.failoverPolicy ?? 'resend') as FailoverPolicy,
    });
    // A daemon taking over gets its mounts from the state, not from the command line (as nydusd).
    if (takingOver) daemon.awaitTakeover({ mountpoint: f.mountpoint as string, readOnly: f.writable !== true });
    else if (f.sharedDir !== undefined) await daemon.mount(f.virtualMountpoint, { fs_type: 'passthrough_fs', source: f.sharedDir, config: '' });
    if (f.bootstrap !== undefined && !takingOver) {
      const [{ localfsConfig }, { readPathList }] = await Promise.all([import('../daemon/rafs-mount.js'), import('../daemon/image-source.js')]);
      const config = f.localfsDir !== undefined ? localfsConfig(f.localfsDir) : readRegularFileSync(f.config as string, CONFIG_MAX_BYTES, `--config ${f.config}`).toString('utf8');
      const files = f.prefetchFiles !== undefined ? await readPathList(f.prefetchFiles) : undefined;
      await daemon.mount(f.virtualMountpoint, { fs_type: 'rafs', source: f.bootstrap, config, ...(files ? { prefetch_files: files } : {}) });
    }
    if (takingOver) log.info({ supervisor: f.supervisor }, 'waiting for the takeover (state INIT)');
    else if (f.mountpoint !== undefined) daemon.mountFuse({ mountpoint: f.mountpoint, readOnly: f.writable !== true });
    else daemon.listen({ socketPath: f.sock as string });
    if (f.apisock !== undefined) {
      api = new ApiServer(daemon, log.child({ component: 'api' }));
      await api.listen(f.apisock);
    }
    onStopSignals(() => void shutdown(EXIT_OK));
    if (f.mountpoint === undefined) process.stderr.write(`${READY_LINE}\n`);
    const reason = await daemon.run();
    log.info({ reason }, f.mountpoint !== undefined ? 'FUSE filesystem unmounted; exiting' : 'vhost-user frontend gone; exiting');
    return await shutdown(EXIT_OK);
  } catch (e) {
    const code = reportError(e);
    return await shutdown(code);
  }
}
