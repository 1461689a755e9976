/**
 * `damselfly` with virtiofsd's arguments and no subcommand acts as virtiofsd (Kata
 * `shared_fs = "virtio-fs"`): shares a host directory through the passthrough filesystem over
 * vhost-user-fs, on a socket it creates (`--socket-path`, runtime-rs) or an inherited listening
 * fd (`--fd=3`, the Go runtime), prints `Waiting for vhost-user socket connection...` on stderr
 * once listening (runtime-rs waits for it), and exits when the VMM disconnects.
 */
import { chmodSync, chownSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { type LogLevel, type Logger, Metrics, UsageError, collectAtRest, createLogger, errorMessage } from '../base/index.js';
// The daemon's modules themselves, not its index: this entry point (Kata's virtiofsd, started for
// every sandbox) then loads none of the image-serving code.
import type { PassthroughFactory } from '../daemon/mounts.js';
import { DEFAULT_NOFILE, raiseNofileLimit } from '../daemon/fd-limit.js';
import { readOnly } from '../daemon/read-only-fs.js';
import { SyslogStream } from '../daemon/syslog.js';
import { VhostService, removeStaleSocket } from '../daemon/vhost-service.js';
import { IdTranslation, PassthroughFs, type PassthroughOptions, XattrMap } from '../fs/passthrough/index.js';
import { FuseServer } from '../fuse/index.js';
import { EXIT_OK, EXIT_USAGE, onStopSignals, reportError } from './exit.js';
import { type VirtiofsdArgs, VIRTIOFSD_USAGE, parseVirtiofsdArgs } from './virtiofsd-args.js';

export const READY_LINE = 'Waiting for vhost-user socket connection...';

/** The virtiofsd options beyond the daemon's own that the passthrough filesystem takes as they are. */
type PassthroughExtras = Partial<
  Pick<PassthroughOptions, 'writeback' | 'allowDirectIo' | 'killprivV2' | 'readdirplus' | 'allowMmap' | 'preserveNoatime' | 'translateUid' | 'translateGid' | 'xattrmap' | 'posixAcl' | 'securityLabel'>
>;

/**
 * Passthrough filesystems for the daemons: `PassthroughFs` with virtiofsd's options mapped. The
 * daemon carries `extra` without looking into it; only `serve` below fills it, with
 * `PassthroughExtras` (the nydusd mode's passthrough mounts give none).
 */
export const passthroughFactory: PassthroughFactory = (o) =>
  new PassthroughFs({
    root: o.root,
    xattr: o.xattr,
    cache: o.cache,
    announceSubmounts: o.announceSubmounts,
    ...(o.extra as PassthroughExtras | undefined),
    log: o.log,
    metrics: o.metrics,
  });

/** The syslog socket (--syslog), or stderr with a line saying why when nothing listens there. */
function syslogOrStderr(): SyslogStream | number {
  try {
    return new SyslogStream('damselfly');
  } catch (e) {
    process.stderr.write(`damselfly: --syslog: ${errorMessage(e)}; logging to stderr\n`);
    return 2;
  }
}

function pinoLevel(level: string): LogLevel {
  return (level === 'off' ? 'silent' : level) as LogLevel;
}

/** A group name or number → gid (from /etc/group). */
function groupId(group: string): number | undefined {
  if (/^\d+$/.test(group)) return Number(group);
  try {
    const line = readFileSync('/etc/group', 'utf8')
      .split('\n')
      .find((l) => l.split(':')[0] === group);
    const gid = line?.split(':')[2];
    return gid !== undefined && /^\d+$/.test(gid) ? Number(gid) : undefined;
  } catch {
    return undefined;
  }
}

export interface VirtiofsdDeps {
  /** Creates the shared directory's filesystem (tests give fakes). */
  passthrough: PassthroughFactory;
}

/** Runs virtiofsd mode; resolves with the exit code. */
export async function runVirtiofsd(argv: readonly string[], deps: VirtiofsdDeps): Promise<number> {
  let parsed: { args: VirtiofsdArgs; warnings: string[] };
  try {
    parsed = parseVirtiofsdArgs(argv);
  } catch (e) {
    process.stderr.write(`damselfly: ${errorMessage(e)}\n${VIRTIOFSD_USAGE}`);
    return EXIT_USAGE;
  }
  const { args, warnings } = parsed;
  if (args.help) {
    process.stdout.write(VIRTIOFSD_USAGE);
    return EXIT_OK;
  }
  const log = createLogger(pinoLevel(args.logLevel), args.syslog ? syslogOrStderr() : 2).child({ component: 'virtiofsd' });
  for (const w of warnings) log.warn(w);
  raiseNofileLimit(args.rlimitNofile ?? DEFAULT_NOFILE, log);
  try {
    return await serve(args, deps, log);
  } catch (e) {
    // Under Kata's Go runtime stderr is /dev/null: the reason goes to syslog too.
    if (args.syslog) log.error({ err: errorMessage(e) }, 'exiting');
    return reportError(e);
  }
}

async function serve(args: VirtiofsdArgs, deps: VirtiofsdDeps, log: Logger): Promise<number> {
  const root = args.sharedDir as string;
  const st = statSync(root, { throwIfNoEntry: false });
  if (st === undefined || !(st.isDirectory() || st.isFile())) throw new UsageError(`${root} does not exist`);
  const translateUid = IdTranslation.parse(args.translateUid, '--translate-uid');
  const translateGid = IdTranslation.parse(args.translateGid, '--translate-gid');
  const xattrmap = args.xattrmap === undefined ? undefined : XattrMap.parse(args.xattrmap);
  const metrics = new Metrics();
  const shared = await deps.passthrough({
    root,
    xattr: args.xattr || args.posixAcl || args.securityLabel || args.xattrmap !== undefined,
    cache: args.cache,
    announceSubmounts: args.announceSubmounts,
    log: log.child({ component: 'passthrough' }),
    metrics,
    extra: {
      writeback: args.writeback,
      allowDirectIo: args.allowDirectIo,
      readdirplus: args.readdirplus,
      killprivV2: args.killprivV2,
      posixAcl: args.posixAcl,
      securityLabel: args.securityLabel,
      allowMmap: args.allowMmap,
      preserveNoatime: args.preserveNoatime,
      translateUid,
      translateGid,
      xattrmap,
    } satisfies PassthroughExtras,
  });
  const fs = args.readonly ? readOnly(shared) : shared;
  const server = new FuseServer(fs, { log: log.child({ component: 'fuse' }), metrics, onRest: collectAtRest(log) });
  const vhost = new VhostService({ server, log, metrics });
  const pidFile = args.socketPath !== undefined ? `${args.socketPath}.pid` : undefined;
  if (args.fd !== undefined) vhost.listen({ fd: args.fd });
  else {
    const socketPath = args.socketPath as string;
    vhost.listen({ socketPath });
    // Only once listening: a start that fails (the path taken by a file) leaves no pid file.
    if (pidFile !== undefined) writeFileSync(pidFile, `${process.pid}\n`);
    if (args.socketGroup !== undefined) {
      const gid = groupId(args.socketGroup);
      if (gid === undefined) log.warn({ group: args.socketGroup }, '--socket-group: no such group');
      else {
        chownSync(socketPath, -1, gid);
        chmodSync(socketPath, 0o660);
      }
    }
  }
  const cleanup = (): void => {
    if (pidFile !== undefined) rmSync(pidFile, { force: true });
    if (args.socketPath !== undefined) removeStaleSocket(args.socketPath);
  };
  const stop = (): void => {
    vhost.close();
    cleanup();
    process.exit(EXIT_OK);
  };
  onStopSignals(stop);
  log.info({ sharedDir: root, cache: args.cache, xattr: args.xattr }, 'vhost-user socket listening');
  process.stderr.write(`${READY_LINE}\n`);
  const reason = await vhost.run();
  log.info({ reason }, 'vhost-user frontend gone; exiting');
  cleanup();
  return EXIT_OK;
}
