/**
 * One executable, three grammars: the `damselfly` subcommands (commander); nydusd's
 * `virtiofs --apisock … --sock …` (Kata virtio-fs-nydus) and `fuse --mountpoint …` (nydus-snapshotter's
 * fusedev mode); and, with no subcommand, virtiofsd's command line (Kata virtio-fs), whose options
 * and `-o` compat syntax commander does not speak. Pure: decides from argv only.
 */
import type { LogLevel } from '../base/index.js';

export type CliMode =
  /**
   * A damselfly subcommand, named when argv names one; `version` for -V/--version (no subcommand
   * needed); neither for help, nothing or an unknown word (every subcommand, for the listing).
   */
  | { mode: 'commander'; subcommand?: string; version?: true }
  /** virtiofsd's argv: everything after the program name. */
  | { mode: 'virtiofsd'; argv: string[] }
  /** nydusd's `virtiofs` or `fuse` arguments (after the subcommand) and a global --log-level before it. */
  | { mode: 'nydusd'; subcommand: NydusdSubcommand; argv: string[]; logLevel?: LogLevel };

/** The nydusd subcommands Damselfly acts as. */
export type NydusdSubcommand = 'virtiofs' | 'fuse';

/** The subcommands `program.ts` registers (a test holds the two equal). */
export const SUBCOMMANDS: readonly string[] = ['build', 'inspect', 'check', 'unpack', 'export', 'mount', 'passthrough', 'virtiofs', 'cache', 'convert', 'pattern'];

/** `--print-capabilities`: the vhost-user backend description (vhost-user.json). */
export function printCapabilities(): void {
  process.stdout.write(JSON.stringify({ type: 'fs' }, null, 2) + '\n');
}

const HELP_OR_VERSION = new Set(['-h', '--help', '-V', '--version', 'help']);
const VERSION = new Set(['-V', '--version']);
/** nydusd-only options of `virtiofs`: their presence selects nydusd mode. */
const NYDUSD_MARKERS = ['--apisock', '-A', '--sock'];

/** `argv` without the node binary and script path. */
export function cliMode(argv: readonly string[], subcommands: readonly string[]): CliMode {
  let i = 0;
  let logLevel: string | undefined;
  // damselfly's own global option may come first: --log-level L / --log-level=L.
  while (i < argv.length) {
    const a = argv[i] as string;
    if (a === '--log-level' && i + 1 < argv.length) {
      logLevel = argv[i + 1];
      i += 2;
    } else if (a.startsWith('--log-level=')) {
      logLevel = a.slice('--log-level='.length);
      i += 1;
    } else break;
  }
  const first = argv[i];
  if (first !== undefined && VERSION.has(first)) return { mode: 'commander', version: true };
  if (first === undefined || HELP_OR_VERSION.has(first)) return { mode: 'commander' };
  const nydusd = (subcommand: NydusdSubcommand): CliMode => ({ mode: 'nydusd', subcommand, argv: argv.slice(i + 1), ...(logLevel !== undefined ? { logLevel: logLevel as LogLevel } : {}) });
  // nydusd's FUSE daemon: no damselfly subcommand has the name.
  if (first === 'fuse') return nydusd('fuse');
  if (subcommands.includes(first)) {
    const rest = argv.slice(i + 1);
    if (first === 'virtiofs' && rest.some((a) => NYDUSD_MARKERS.some((m) => a === m || a.startsWith(`${m}=`)))) return nydusd('virtiofs');
    return { mode: 'commander', subcommand: first };
  }
  if (first.startsWith('-')) return { mode: 'virtiofsd', argv: [...argv] };
  return { mode: 'commander' };
}
