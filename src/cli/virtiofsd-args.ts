/**
 * The command line of the Rust virtiofsd (1.13; `src/main.rs` `Opt` and `parse_compat`), parsed
 * as clap does: `--opt=value` and `--opt value`, `-o a,b=c` compat options (also `-oa,b`),
 * `-d`/`-f`, repeated options overriding earlier ones; an unknown option or a bad value is a usage
 * error. Every option is accepted; those Damselfly cannot honour produce a warning, not a failure.
 * Pure: argv in, options and warnings out.
 */
import { UsageError } from '../base/index.js';

export type CachePolicy = 'auto' | 'always' | 'never' | 'metadata';

export interface VirtiofsdArgs {
  sharedDir?: string;
  socketPath?: string;
  socketGroup?: string;
  fd?: number;
  tag?: string;
  threadPoolSize: number;
  xattr: boolean;
  posixAcl: boolean;
  securityLabel: boolean;
  xattrmap?: string;
  sandbox: string;
  seccomp: string;
  readonly: boolean;
  announceSubmounts: boolean;
  inodeFileHandles: string;
  cache: CachePolicy;
  allowMmap: boolean;
  readdirplus: boolean;
  writeback: boolean;
  allowDirectIo: boolean;
  killprivV2: boolean;
  modcaps?: string;
  logLevel: string;
  syslog: boolean;
  rlimitNofile?: number;
  uidMap: string[];
  gidMap: string[];
  translateUid: string[];
  translateGid: string[];
  preserveNoatime: boolean;
  migrationMode: string;
  migrationOnError: string;
  migrationVerifyHandles: boolean;
  migrationConfirmPaths: boolean;
  printCapabilities: boolean;
  help: boolean;
  version: boolean;
  /** Long options given on the command line (not defaulted). */
  given: Set<string>;
}

type Spec =
  | { kind: 'flag'; set: (a: VirtiofsdArgs) => void }
  | { kind: 'value'; values?: readonly string[]; number?: boolean; set: (a: VirtiofsdArgs, v: string) => void };

const flag = (set: (a: VirtiofsdArgs) => void): Spec => ({ kind: 'flag', set });
const value = (set: (a: VirtiofsdArgs, v: string) => void, values?: readonly string[]): Spec => ({ kind: 'value', set, ...(values ? { values } : {}) });
const num = (set: (a: VirtiofsdArgs, n: number) => void): Spec => ({ kind: 'value', number: true, set: (a, v) => set(a, Number(v)) });

export const LOG_LEVELS_VIRTIOFSD = ['error', 'warn', 'info', 'debug', 'trace', 'off'] as const;

/** Every long option of virtiofsd 1.13. */
const LONG = new Map<string, Spec>([
  ['shared-dir', value((a, v) => (a.sharedDir = v))],
  ['tag', value((a, v) => (a.tag = v))],
  ['socket', value((a, v) => (a.socketPath = v))],
  ['socket-path', value((a, v) => (a.socketPath = v))],
  ['socket-group', value((a, v) => (a.socketGroup = v))],
  ['fd', num((a, n) => (a.fd = n))],
  ['thread-pool-size', num((a, n) => (a.threadPoolSize = n))],
  ['xattr', flag((a) => (a.xattr = true))],
  ['posix-acl', flag((a) => (a.posixAcl = true))],
  ['xattrmap', value((a, v) => (a.xattrmap = v))],
  ['sandbox', value((a, v) => (a.sandbox = v), ['namespace', 'chroot', 'none'])],
  ['readonly', flag((a) => (a.readonly = true))],
  ['seccomp', value((a, v) => (a.seccomp = v), ['none', 'kill', 'log', 'trap'])],
  ['announce-submounts', flag((a) => (a.announceSubmounts = true))],
  ['no-announce-submounts', flag((a) => (a.announceSubmounts = false))],
  ['inode-file-handles', value((a, v) => (a.inodeFileHandles = v), ['never', 'prefer', 'mandatory', 'fallback'])],
  ['cache', value((a, v) => (a.cache = v as CachePolicy), ['auto', 'always', 'never', 'metadata'])],
  ['allow-mmap', flag((a) => (a.allowMmap = true))],
  ['no-readdirplus', flag((a) => (a.readdirplus = false))],
  ['writeback', flag((a) => (a.writeback = true))],
  ['allow-direct-io', flag((a) => (a.allowDirectIo = true))],
  ['print-capabilities', flag((a) => (a.printCapabilities = true))],
  ['modcaps', value((a, v) => (a.modcaps = v))],
  ['log-level', value((a, v) => (a.logLevel = v), [...LOG_LEVELS_VIRTIOFSD, 'fatal', 'silent'])],
  ['syslog', flag((a) => (a.syslog = true))],
  ['rlimit-nofile', num((a, n) => (a.rlimitNofile = n))],
  ['killpriv-v2', flag((a) => (a.killprivV2 = true))],
  ['no-killpriv-v2', flag((a) => (a.killprivV2 = false))],
  ['security-label', flag((a) => (a.securityLabel = true))],
  ['uid-map', value((a, v) => a.uidMap.push(v))],
  ['gid-map', value((a, v) => a.gidMap.push(v))],
  ['translate-uid', value((a, v) => a.translateUid.push(v))],
  ['translate-gid', value((a, v) => a.translateGid.push(v))],
  ['preserve-noatime', flag((a) => (a.preserveNoatime = true))],
  ['migration-mode', value((a, v) => (a.migrationMode = v), ['find-paths', 'file-handles'])],
  ['migration-on-error', value((a, v) => (a.migrationOnError = v), ['abort', 'guest-error'])],
  ['migration-verify-handles', flag((a) => (a.migrationVerifyHandles = true))],
  ['migration-confirm-paths', flag((a) => (a.migrationConfirmPaths = true))],
  ['help', flag((a) => (a.help = true))],
  ['version', flag((a) => (a.version = true))],
]);

function defaults(): VirtiofsdArgs {
  return {
    threadPoolSize: 0,
    xattr: false,
    posixAcl: false,
    securityLabel: false,
    sandbox: 'namespace',
    seccomp: 'kill',
    readonly: false,
    announceSubmounts: true,
    inodeFileHandles: 'prefer',
    cache: 'auto',
    allowMmap: false,
    readdirplus: true,
    writeback: false,
    allowDirectIo: false,
    killprivV2: false,
    logLevel: 'info',
    syslog: false,
    uidMap: [],
    gidMap: [],
    translateUid: [],
    translateGid: [],
    preserveNoatime: false,
    migrationMode: 'find-paths',
    migrationOnError: 'abort',
    migrationVerifyHandles: false,
    migrationConfirmPaths: false,
    printCapabilities: false,
    help: false,
    version: false,
    given: new Set(),
  };
}

function apply(a: VirtiofsdArgs, name: string, spec: Spec, v: string | undefined): void {
  if (spec.kind === 'flag') {
    if (v !== undefined) throw new UsageError(`unexpected value '${v}' for '--${name}' found; no more were expected`);
    spec.set(a);
    return;
  }
  if (v === undefined) throw new UsageError(`a value is required for '--${name} <${name.toUpperCase()}>' but none was supplied`);
  if (spec.values !== undefined && !spec.values.includes(v)) throw new UsageError(`invalid value '${v}' for '--${name}' (possible values: ${spec.values.join(', ')})`);
  if (spec.number === true && !/^\d+$/.test(v)) throw new UsageError(`invalid value '${v}' for '--${name}': a non-negative integer is expected`);
  spec.set(a, v);
}

/** `-o` compat options (virtiofsd `parse_compat`, plus the C virtiofsd's that are harmless). */
function applyCompat(a: VirtiofsdArgs, item: string, warn: (m: string) => void): void {
  for (const option of item.split(',')) {
    if (option === '') continue;
    const eq = option.indexOf('=');
    if (eq >= 0) {
      const [k, v] = [option.slice(0, eq), option.slice(eq + 1)];
      const bad = (): never => {
        throw new UsageError(`Invalid compat value '${v}' for '-o ${k}'`);
      };
      if (k === 'source') a.sharedDir = v;
      else if (k === 'cache') a.cache = ({ auto: 'auto', always: 'always', none: 'never', never: 'never', metadata: 'metadata' } as Record<string, CachePolicy>)[v] ?? bad();
      else if (k === 'loglevel' || k === 'log_level') a.logLevel = ({ debug: 'debug', info: 'info', warn: 'warn', err: 'error', error: 'error' } as Record<string, string>)[v] ?? bad();
      else if (k === 'sandbox') {
        a.sandbox = v === 'namespace' || v === 'chroot' ? v : bad();
        a.given.add('sandbox');
      }
      else if (k === 'xattrmap') a.xattrmap = v;
      else if (k === 'modcaps') a.modcaps = v;
      else if (k === 'timeout' || k === 'max_idle_threads') warn(`-o ${k}= has no effect`);
      else throw new UsageError(`Invalid compat argument '-o ${option}'`);
      continue;
    }
    const flags: Record<string, (x: VirtiofsdArgs) => void> = {
      xattr: (x) => (x.xattr = true),
      no_xattr: (x) => (x.xattr = false),
      readdirplus: (x) => (x.readdirplus = true),
      no_readdirplus: (x) => (x.readdirplus = false),
      writeback: (x) => (x.writeback = true),
      no_writeback: (x) => (x.writeback = false),
      allow_direct_io: (x) => (x.allowDirectIo = true),
      no_allow_direct_io: (x) => (x.allowDirectIo = false),
      announce_submounts: (x) => (x.announceSubmounts = true),
      killpriv_v2: (x) => (x.killprivV2 = true),
      no_killpriv_v2: (x) => (x.killprivV2 = false),
      posix_acl: (x) => (x.posixAcl = true),
      no_posix_acl: (x) => (x.posixAcl = false),
      security_label: (x) => (x.securityLabel = true),
      no_security_label: (x) => (x.securityLabel = false),
      debug: (x) => (x.logLevel = 'debug'),
    };
    const f = flags[option];
    if (f !== undefined) f(a);
    else if (['no_posix_lock', 'no_flock'].includes(option)) continue;
    else if (['flock', 'posix_lock', 'allow_root'].includes(option)) warn(`-o ${option} is not supported and is ignored`);
    else throw new UsageError(`Invalid compat argument '-o ${option}'`);
  }
}

/** Parses virtiofsd's argv (without the program name). Throws `UsageError`. */
export function parseVirtiofsdArgs(argv: readonly string[]): { args: VirtiofsdArgs; warnings: string[] } {
  const a = defaults();
  const warnings: string[] = [];
  const compat: string[] = [];
  let usedCompat = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      if (i + 1 < argv.length) throw new UsageError(`unexpected argument '${argv[i + 1]}' found`);
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      const spec = LONG.get(name);
      if (spec === undefined) throw new UsageError(`unexpected argument '${arg}' found`);
      let v = eq >= 0 ? arg.slice(eq + 1) : undefined;
      if (v === undefined && spec.kind === 'value') {
        if (i + 1 >= argv.length) throw new UsageError(`a value is required for '--${name} <${name.toUpperCase()}>' but none was supplied`);
        v = argv[++i];
      }
      apply(a, name, spec, v);
      a.given.add(name);
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      // A cluster of short options: -d, -f, -h, -V; -o takes the rest of the cluster or the next argument.
      for (let k = 1; k < arg.length; k++) {
        const c = arg[k] as string;
        if (c === 'o') {
          let v = arg.slice(k + 1).replace(/^=/, '');
          if (v === '') {
            if (i + 1 >= argv.length) throw new UsageError("a value is required for '-o <COMPAT_OPTIONS>' but none was supplied");
            v = argv[++i] as string;
          }
          compat.push(v);
          usedCompat = true;
          break;
        }
        if (c === 'd') a.logLevel = 'debug';
        else if (c === 'f') warnings.push("Use of deprecated flag '-f': This flag has no effect, please remove it");
        else if (c === 'h') a.help = true;
        else if (c === 'V') a.version = true;
        else throw new UsageError(`unexpected argument '-${c}' found`);
      }
      continue;
    }
    throw new UsageError(`unexpected argument '${arg}' found`);
  }
  for (const item of compat) applyCompat(a, item, (m) => warnings.push(m));
  if (usedCompat) warnings.push("Use of deprecated option format '-o': Please specify options without it (e.g., '--cache auto' instead of '-o cache=auto')");
  validate(a, argv);
  return { args: a, warnings: [...warnings, ...unsupported(a)] };
}

function validate(a: VirtiofsdArgs, argv: readonly string[]): void {
  if (a.printCapabilities || a.help || a.version) return;
  const has = (name: string): boolean => argv.some((x) => x === `--${name}` || x.startsWith(`--${name}=`));
  if (a.fd !== undefined && (has('socket-path') || has('socket'))) throw new UsageError("the argument '--fd <FD>' cannot be used with '--socket-path <SOCKET_PATH>'");
  if (a.socketGroup !== undefined && a.fd !== undefined) throw new UsageError("the argument '--socket-group <SOCKET_GROUP>' cannot be used with '--fd <FD>'");
  if (a.fd === undefined && a.socketPath === undefined) throw new UsageError("the following required arguments were not provided: --socket-path <SOCKET_PATH> (or --fd <FD>)");
  if (a.sharedDir === undefined) throw new UsageError('missing "--shared-dir" or "-o source" option');
  if (a.posixAcl && (a.translateUid.length > 0 || a.translateGid.length > 0)) throw new UsageError("the argument '--posix-acl' cannot be used with '--translate-uid'/'--translate-gid'");
  if (a.migrationMode === 'file-handles' && (a.migrationConfirmPaths || a.migrationVerifyHandles)) {
    throw new UsageError('--migration-confirm-paths and --migration-verify-handles cannot be used with --migration-mode=file-handles');
  }
  if (a.tag !== undefined && (a.tag === '' || Buffer.byteLength(a.tag) > 36)) throw new UsageError(`invalid value '${a.tag}' for '--tag': 1 to 36 bytes`);
}

/** Warnings for options given that Damselfly accepts but cannot honour. */
function unsupported(a: VirtiofsdArgs): string[] {
  const w: string[] = [];
  if (a.given.has('sandbox') && a.sandbox !== 'none') w.push(`--sandbox ${a.sandbox}: no sandbox is set up; the daemon runs in the caller's namespaces`);
  if (a.given.has('seccomp') && a.seccomp !== 'none') w.push(`--seccomp ${a.seccomp}: no seccomp filter is installed`);
  if (a.modcaps !== undefined) w.push('--modcaps: capabilities are left unchanged');
  if (a.inodeFileHandles === 'mandatory') w.push('--inode-file-handles=mandatory: file handles are not used');
  if (a.inodeFileHandles === 'fallback') w.push("Use of deprecated value 'fallback' for '--inode-file-handles': Please use 'prefer' instead");
  if (a.threadPoolSize > 1) w.push('--thread-pool-size: requests are served on the event loop (no thread pool)');
  if (a.tag !== undefined) w.push('--tag: the VMM provides the tag (VHOST_USER_PROTOCOL_F_CONFIG is not offered)');
  if (a.uidMap.length + a.gidMap.length > 0) w.push('--uid-map/--gid-map: no user namespace is set up');
  if (a.migrationVerifyHandles || a.migrationConfirmPaths || a.migrationMode !== 'find-paths' || a.migrationOnError !== 'abort') {
    w.push('--migration-*: migration is not supported');
  }
  return w;
}

export const VIRTIOFSD_USAGE = `Usage: damselfly --shared-dir <SHARED_DIR> (--socket-path <SOCKET_PATH> | --fd <FD>) [OPTIONS]

Acts as virtiofsd (Kata shared_fs = "virtio-fs"): shares SHARED_DIR with a guest over vhost-user-fs.
Accepts the Rust virtiofsd's options (--opt=value or --opt value, -o compat options); options
that cannot apply here are accepted with a warning.
`;
