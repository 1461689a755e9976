/**
 * `damselfly passthrough`: serve a host directory read-write on a host mountpoint through
 * /dev/fuse with the passthrough filesystem (virtiofsd semantics), in the foreground. For trying
 * and testing the filesystem Kata guests see through virtio-fs.
 */
import { Option, type Command } from 'commander';
import { Metrics, collectAtRest } from '../base/index.js';
import { DEFAULT_NOFILE, raiseNofileLimit } from '../daemon/fd-limit.js';
import { PassthroughFs } from '../fs/passthrough/index.js';
import { FuseServer } from '../fuse/index.js';
import { FuseMount } from '../transport/index.js';
import { getLogger, oneOf, parseCount, printJson, run } from './common.js';
import { onStopSignals } from './exit.js';

interface PassthroughFlags {
  sharedDir: string;
  cache: 'never' | 'metadata' | 'auto' | 'always';
  xattr: boolean;
  announceSubmounts: boolean;
  writeback: boolean;
  killprivV2: boolean;
  posixAcl: boolean;
  securityLabel: boolean;
  stats?: boolean;
  rlimitNofile: number;
}

export function register(program: Command): void {
  program
    .command('passthrough')
    .description('serve a host directory read-write on a mountpoint with FUSE (foreground; Ctrl-C, SIGTERM or SIGHUP unmounts)')
    .requiredOption('--shared-dir <dir>', 'the directory to serve')
    .addOption(new Option('--cache <policy>', 'never, metadata, auto or always (as virtiofsd)').argParser(oneOf(['never', 'metadata', 'auto', 'always'] as const)).default('auto'))
    .option('--no-xattr', 'answer every xattr request with ENOSYS')
    .option('--announce-submounts', 'mark mount points inside the directory as submounts', false)
    .option('--writeback', 'ask for the kernel writeback cache', false)
    .option('--killpriv-v2', 'offer FUSE_HANDLE_KILLPRIV_V2: setuid and setgid dropped by the daemon when the kernel says (as virtiofsd)', false)
    .option('--posix-acl', 'serve POSIX ACLs: the kernel enforces them, the host keeps them (as virtiofsd)', false)
    .option('--security-label', 'label what is created with the security context the kernel sends (SELinux; as virtiofsd)', false)
    .option('--stats', 'print the counters as JSON on exit')
    .option('--rlimit-nofile <n>', 'raise the open-file limit to n (one fd per inode the kernel holds; 0 leaves it)', parseCount, DEFAULT_NOFILE)
    .argument('<mountpoint>', 'an existing directory')
    .action((mountpoint: string, flags: PassthroughFlags) =>
      run(async () => {
        const log = getLogger();
        raiseNofileLimit(flags.rlimitNofile, log);
        const metrics = new Metrics();
        const fs = new PassthroughFs({
          root: flags.sharedDir,
          xattr: flags.xattr,
          cache: flags.cache,
          announceSubmounts: flags.announceSubmounts,
          writeback: flags.writeback,
          killprivV2: flags.killprivV2,
          posixAcl: flags.posixAcl,
          securityLabel: flags.securityLabel,
          log: log.child({ component: 'passthrough' }),
          metrics,
        });
        const server = new FuseServer(fs, { log: log.child({ component: 'fuse' }), metrics, onRest: collectAtRest(log) });
        // Handlers first (see mount.ts): a signal sent on seeing the ready line always unmounts.
        const offSignals = onStopSignals(() => void mount.unmount());
        const mount = FuseMount.mount({ mountpoint, server, log: log.child({ component: 'fusedev' }), readOnly: false, fsname: flags.sharedDir, subtype: 'damselfly-passthrough' });
        process.stderr.write(`damselfly: ${flags.sharedDir} mounted on ${mountpoint}\n`);
        await mount.ended;
        offSignals();
        fs.close();
        if (flags.stats === true) printJson(metrics.snapshot());
      }),
    );
}
