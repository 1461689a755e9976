/**
 * Kata's command lines against `damselfly`: the virtiofsd argv of the Go runtime
 * (`--syslog --cache=auto --shared-dir=DIR --fd=3 …`, fd 3 a listening socket the runtime made)
 * and of runtime-rs (`--socket-path P --shared-dir D --cache auto … -o announce_submounts`, ready
 * when stderr says `Waiting for vhost-user socket connection`), virtiofsd's full option set and
 * `-o` compat syntax, unknown options as errors, the nydusd `virtiofs` argv of both runtimes, and
 * the dispatch between the three grammars. The served share is checked through an in-process
 * vhost-user frontend (INIT, LOOKUP, OPEN, READ), and the daemon exits when it disconnects.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cliMode } from '../../src/cli/dispatch.js';
import { parseNydusdArgs } from '../../src/cli/nydusd-compat.js';
import { parseVirtiofsdArgs } from '../../src/cli/virtiofsd-args.js';
import { Opcode } from '../../src/fuse/abi.js';
import { native } from '../../src/native/index.js';
import { CLI, damselfly } from '../helpers/env.js';
import { cstr, initArgs, parseEntry, parseReply, readArgs, request, u32Args } from '../helpers/fuse-client.js';
import { type Ring, TestFrontend } from '../helpers/vhost-frontend.js';

const SID = '0123456789abcdef';
const GO_ARGV = (share: string): string[] => ['--syslog', '--cache=auto', `--shared-dir=${share}`, '--fd=3', '--thread-pool-size=1', '--announce-submounts'];
const RS_ARGV = (sock: string, share: string): string[] => ['--socket-path', sock, '--shared-dir', share, '--cache', 'auto', '--thread-pool-size=1', '-o', 'announce_submounts'];
const SUBCOMMANDS = ['build', 'inspect', 'mount', 'virtiofs', 'pattern'];

function usageError(f: () => unknown, re: RegExp): void {
  assert.throws(f, (e: unknown) => e instanceof Error && re.test(e.message));
}

describe('virtiofsd command line', () => {
  test("the Go runtime's argv, verbatim", () => {
    const { args, warnings } = parseVirtiofsdArgs(GO_ARGV(`/run/kata-containers/shared/sandboxes/${SID}/shared`));
    assert.equal(args.sharedDir, `/run/kata-containers/shared/sandboxes/${SID}/shared`);
    assert.equal(args.fd, 3);
    assert.equal(args.socketPath, undefined);
    assert.equal(args.cache, 'auto');
    assert.equal(args.threadPoolSize, 1);
    assert.equal(args.announceSubmounts, true);
    assert.equal(args.syslog, true);
    assert.equal(args.xattr, false);
    assert.deepEqual(warnings, [], 'every option of it is honoured');
    assert.equal(parseVirtiofsdArgs([...GO_ARGV('/s'), '--xattr']).args.xattr, true);
  });

  test("runtime-rs's argv, verbatim", () => {
    const { args } = parseVirtiofsdArgs(RS_ARGV(`/run/kata/${SID}/root/virtiofsd.sock`, `/run/kata-containers/shared/sandboxes/${SID}/ro`));
    assert.equal(args.socketPath, `/run/kata/${SID}/root/virtiofsd.sock`);
    assert.equal(args.sharedDir, `/run/kata-containers/shared/sandboxes/${SID}/ro`);
    assert.equal(args.cache, 'auto');
    assert.equal(args.announceSubmounts, true);
    assert.equal(args.fd, undefined);
  });

  test('every virtiofsd option is accepted, in both forms', () => {
    const { args, warnings } = parseVirtiofsdArgs([
      '--shared-dir', '/s', '--socket=/old.sock', '--socket-group', 'kvm', '--tag=myfs', '--thread-pool-size', '0',
      '--posix-acl', '--xattrmap', ':map::user.virtiofs.:', '--sandbox', 'none', '--readonly', '--seccomp=log',
      '--no-announce-submounts', '--inode-file-handles=never', '--cache=metadata', '--allow-mmap', '--no-readdirplus',
      '--writeback', '--allow-direct-io', '--modcaps=+sys_admin:-chown', '--log-level', 'debug', '--rlimit-nofile', '4096',
      '--killpriv-v2', '--no-killpriv-v2', '--security-label', '--uid-map', ':0:100000:65536:', '--gid-map=:0:100000:65536:',
      '--preserve-noatime', '--migration-mode', 'find-paths', '--migration-on-error=guest-error', '--migration-verify-handles',
      '--migration-confirm-paths', '-d', '-f',
    ]);
    assert.equal(args.socketPath, '/old.sock', '--socket is the deprecated --socket-path');
    assert.equal(args.socketGroup, 'kvm');
    assert.equal(args.tag, 'myfs');
    assert.equal(args.readonly, true);
    assert.equal(args.announceSubmounts, false);
    assert.equal(args.cache, 'metadata');
    assert.equal(args.readdirplus, false);
    assert.equal(args.killprivV2, false, 'the later of two overriding flags wins');
    assert.equal(args.logLevel, 'debug');
    assert.equal(args.rlimitNofile, 4096);
    assert.deepEqual(args.uidMap, [':0:100000:65536:']);
    assert.ok(warnings.some((w) => w.startsWith('--seccomp')));
    assert.ok(!warnings.some((w) => w.startsWith('--rlimit-nofile')), 'honoured (the daemon raises the limit at start)');
    assert.ok(warnings.some((w) => w.includes("'-f'")));
    assert.ok(!warnings.some((w) => w.startsWith('--sandbox')), '--sandbox none needs no warning');
    const t = parseVirtiofsdArgs(['--fd', '3', '--shared-dir', '/a', '--translate-uid', 'map:0:1000:1', '--translate-gid=guest:0:0:1']).args;
    assert.deepEqual([t.translateUid, t.translateGid], [['map:0:1000:1'], ['guest:0:0:1']]);
    assert.equal(parseVirtiofsdArgs(['--print-capabilities']).args.printCapabilities, true);
    assert.equal(parseVirtiofsdArgs(['--fd=3', '--shared-dir=/a', '--cache=never', '--cache=always']).args.cache, 'always', 'a repeated option overrides');
  });

  test('-o compat options', () => {
    const { args, warnings } = parseVirtiofsdArgs(['--fd=3', '-o', 'source=/x,cache=none,xattr,no_posix_lock,no_flock,flock,posix_lock,loglevel=warn', '-owriteback', '-o=sandbox=chroot']);
    assert.equal(args.sharedDir, '/x');
    assert.equal(args.cache, 'never');
    assert.equal(args.xattr, true);
    assert.equal(args.writeback, true);
    assert.equal(args.logLevel, 'warn');
    assert.equal(args.sandbox, 'chroot');
    assert.ok(warnings.some((w) => w.includes('-o flock')));
    assert.ok(warnings.some((w) => w.includes("deprecated option format '-o'")));
    const b = parseVirtiofsdArgs(['--fd=3', '-o', 'source=/y', '-o', 'no_xattr,announce_submounts,killpriv_v2,posix_acl,no_posix_acl,security_label,readdirplus,allow_direct_io,log_level=err,modcaps=+sys_admin']).args;
    assert.equal(b.xattr, false);
    assert.equal(b.killprivV2, true);
    assert.equal(b.logLevel, 'error');
    assert.equal(b.modcaps, '+sys_admin');
  });

  test('wrong command lines are usage errors', () => {
    usageError(() => parseVirtiofsdArgs([...GO_ARGV('/s'), '--bogus']), /unexpected argument '--bogus'/);
    usageError(() => parseVirtiofsdArgs([...GO_ARGV('/s'), '-o', 'bogus']), /Invalid compat argument '-o bogus'/);
    usageError(() => parseVirtiofsdArgs([...GO_ARGV('/s'), '-o', 'cache=sometimes']), /Invalid compat value/);
    usageError(() => parseVirtiofsdArgs(['--fd=3', '--shared-dir=/s', '--cache=sometimes']), /invalid value 'sometimes' for '--cache'/);
    usageError(() => parseVirtiofsdArgs(['--fd=3', '--shared-dir=/s', '--xattr=yes']), /unexpected value 'yes' for '--xattr'/);
    usageError(() => parseVirtiofsdArgs(['--fd=x', '--shared-dir=/s']), /invalid value 'x' for '--fd'/);
    usageError(() => parseVirtiofsdArgs(['--fd=3', '--shared-dir']), /a value is required for '--shared-dir/);
    usageError(() => parseVirtiofsdArgs(['--fd=3', '--socket-path=/x', '--shared-dir=/s']), /cannot be used with/);
    usageError(() => parseVirtiofsdArgs(['--shared-dir=/s']), /required arguments were not provided/);
    usageError(() => parseVirtiofsdArgs(['--fd=3']), /missing "--shared-dir" or "-o source"/);
    usageError(() => parseVirtiofsdArgs(['--fd=3', '--shared-dir=/s', 'extra']), /unexpected argument 'extra'/);
    usageError(() => parseVirtiofsdArgs(['--fd=3', '--shared-dir=/s', '-x']), /unexpected argument '-x'/);
    usageError(() => parseVirtiofsdArgs(['--fd=3', '--shared-dir=/s', '--tag', 'x'.repeat(37)]), /--tag/);
  });
});

describe('nydusd command line and dispatch', () => {
  test('the nydusd argv of both runtimes', () => {
    const go = parseNydusdArgs(['--log-level', 'info', '--apisock', `/run/vc/vm/${SID}/nydusd-api.sock`, '--sock', `/run/vc/vm/${SID}/vhost-fs.sock`]);
    assert.equal(go.apisock, `/run/vc/vm/${SID}/nydusd-api.sock`);
    assert.equal(go.sock, `/run/vc/vm/${SID}/vhost-fs.sock`);
    assert.equal(go.logLevel, 'info');
    const rs = parseNydusdArgs(['--hybrid-mode', '--log-level', 'debug', '--apisock', `/run/kata/${SID}/root/nydusd-api.sock`, '--sock', `/run/kata/${SID}/root/virtiofsd.sock`]);
    assert.equal(rs.hybridMode, true);
    assert.equal(rs.virtualMountpoint, '/');
    const full = parseNydusdArgs(['-A', '/a', '--sock=/s', '-B', '/boot', '-D', '/blobs', '--prefetch-files', '/list', '-m', '/rafs/x/lowerdir', '--id', 'd1', '--supervisor', '/sup', '-L', '/log', '--rlimit-nofile', '10', '--upgrade', '--log-rotation-size', '5']);
    assert.deepEqual([full.bootstrap, full.localfsDir, full.virtualMountpoint, full.id], ['/boot', '/blobs', '/rafs/x/lowerdir', 'd1']);
    usageError(() => parseNydusdArgs(['--apisock', '/a', '--sock', '/s', '--threads', '4']), /unknown option '--threads'/);
    usageError(() => parseNydusdArgs(['--apisock', '/a']), /--sock/);
    usageError(() => parseNydusdArgs(['--sock', '/s', '--log-level', 'loud']), /loud/);
    usageError(() => parseNydusdArgs(['--sock', '/s', '--id', 'x']), /--supervisor/);
    usageError(() => parseNydusdArgs(['--sock', '/s', '-B', '/b', '-s', '/d', '-D', '/x']), /--shared-dir/);
    usageError(() => parseNydusdArgs(['--sock', '/s', '-B', '/b']), /--config and --localfs-dir are missing/);
    usageError(() => parseNydusdArgs(['--sock', '/s', '--rlimit-nofile', 'many']), /--rlimit-nofile <n>' argument 'many' is invalid/);
  });

  test('dispatch: virtiofsd argv, nydusd virtiofs, damselfly subcommands', () => {
    assert.equal(cliMode(GO_ARGV('/s'), SUBCOMMANDS).mode, 'virtiofsd');
    assert.equal(cliMode(RS_ARGV('/x.sock', '/s'), SUBCOMMANDS).mode, 'virtiofsd');
    assert.deepEqual(cliMode(['--log-level', 'warn', ...RS_ARGV('/x.sock', '/s')], SUBCOMMANDS), { mode: 'virtiofsd', argv: ['--log-level', 'warn', ...RS_ARGV('/x.sock', '/s')] });
    assert.deepEqual(cliMode(['virtiofs', '--log-level', 'info', '--apisock', '/a', '--sock', '/s'], SUBCOMMANDS), { mode: 'nydusd', subcommand: 'virtiofs', argv: ['--log-level', 'info', '--apisock', '/a', '--sock', '/s'] });
    assert.deepEqual(cliMode(['--log-level=warn', 'virtiofs', '--sock=/s'], SUBCOMMANDS), { mode: 'nydusd', subcommand: 'virtiofs', argv: ['--sock=/s'], logLevel: 'warn' });
    assert.equal(cliMode(['virtiofs', '--socket-path', '/s', '--bootstrap', '/b'], SUBCOMMANDS).mode, 'commander', 'the single-image virtiofs');
    assert.equal(cliMode(['build', '--bootstrap', 'b', 'src'], SUBCOMMANDS).mode, 'commander');
    assert.equal(cliMode([], SUBCOMMANDS).mode, 'commander');
    assert.equal(cliMode(['--help'], SUBCOMMANDS).mode, 'commander');
    assert.equal(cliMode(['--version'], SUBCOMMANDS).mode, 'commander');
  });
});

interface Daemon {
  proc: ChildProcess;
  stderr(): string;
  exit: Promise<[number | null, string | null]>;
}

function start(args: string[], stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'pipe', 'pipe'], env: NodeJS.ProcessEnv = process.env): Daemon {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: stdio as never, env });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return { proc, stderr: () => err, exit: once(proc, 'exit') as Promise<[number | null, string | null]> };
}

async function waitFor(d: Daemon, text: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!d.stderr().includes(text)) {
    if (Date.now() > deadline || d.proc.exitCode !== null) throw new Error(`no "${text}" on stderr: ${d.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** INIT, LOOKUP name, OPEN, READ through the rings; returns the file's bytes. */
async function readThroughVirtiofs(f: TestFrontend, name: string, size: number): Promise<Buffer> {
  const ring = f.rings[1] as Ring;
  const init = parseReply(await f.fuse(ring, request(Opcode.INIT, 0, initArgs()).bytes, 256));
  assert.equal(init.error, 0);
  const look = parseReply(await f.fuse(ring, request(Opcode.LOOKUP, 1, cstr(name)).bytes, 256));
  assert.equal(look.error, 0, `LOOKUP ${name}`);
  const { nodeid, attr } = parseEntry(look.payload);
  assert.equal(attr.size, size);
  const open = parseReply(await f.fuse(ring, request(Opcode.OPEN, nodeid, u32Args(0, 0)).bytes, 256));
  assert.equal(open.error, 0);
  const fh = open.payload.readBigUInt64LE(0);
  const read = parseReply(await f.fuse(ring, request(Opcode.READ, nodeid, readArgs(fh, 0, 65536)).bytes, 65536 + 16));
  assert.equal(read.error, 0);
  return read.payload;
}

describe('damselfly as virtiofsd, launched as Kata launches it', () => {
  let work: string;
  let share: string;
  const hello = 'hello from the sandbox share\n';

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-kata-cli-'));
    share = join(work, 'shared');
    await mkdir(join(share, 'cid', 'rootfs'), { recursive: true });
    await writeFile(join(share, 'hello'), hello);
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('an unknown option is an error exit, as virtiofsd', async () => {
    const r = await damselfly([...GO_ARGV(share), '--no-such-flag']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unexpected argument '--no-such-flag'/);
    const n = await damselfly(['virtiofs', '--apisock', join(work, 'a.sock'), '--sock', join(work, 'v.sock'), '--threads', '4']);
    assert.equal(n.code, 2);
    assert.match(n.stderr, /--threads/);
    // damselfly's own --log-level before a nydusd subcommand: an unknown level is a usage error,
    // not an exception out of the logger.
    const level = await damselfly(['--log-level', 'verbose', 'virtiofs', '--apisock', join(work, 'a.sock'), '--sock', join(work, 'v.sock')]);
    assert.equal(level.code, 2, level.stderr);
    assert.match(level.stderr, /^damselfly: --log-level verbose: expected one of fatal, error/);
  });

  test('--translate-uid, --translate-gid and --xattrmap values virtiofsd refuses are usage errors before the socket listens', async () => {
    const sock = join(work, 'translate.sock');
    const bad = await damselfly([...RS_ARGV(sock, share), '--translate-uid', 'guest:0:1000:1', '--translate-uid=squash-guest:0:7:5']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /'--translate-uid': the guest id ranges of 'guest:0:1000:1' and 'squash-guest:0:7:5' overlap/);
    const acl = await damselfly([...RS_ARGV(sock, share), '--translate-gid', 'map:0:100:1', '--posix-acl']);
    assert.equal(acl.code, 2);
    assert.match(acl.stderr, /'--posix-acl' cannot be used with '--translate-uid'\/'--translate-gid'/);
    const map = await damselfly([...RS_ARGV(sock, share), '--xattrmap', ':prefix:all:trusted.:user.virtiofs.']);
    assert.equal(map.code, 2);
    assert.match(map.stderr, /invalid value for '--xattrmap': rule 1: no closing ':'/);
    for (const r of [bad, acl, map]) assert.doesNotMatch(r.stderr, /Waiting for vhost-user socket connection/);
    assert.equal(existsSync(sock), false);
  });

  test('a socket path taken by a regular file: an error naming it, the file kept, no pid file left', async () => {
    const taken = join(work, 'taken.sock');
    await writeFile(taken, 'not a socket');
    const r = await damselfly(RS_ARGV(taken, share), { timeoutMs: 30_000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`damselfly: ${taken}: EADDRINUSE`));
    assert.equal(await readFile(taken, 'utf8'), 'not a socket');
    assert.equal(existsSync(`${taken}.pid`), false);
  });

  test('runtime-rs: --socket-path, ready line on stderr, served share, exit on disconnect', async () => {
    const sock = join(work, 'virtiofsd.sock');
    const d = start(RS_ARGV(sock, share));
    try {
      await waitFor(d, 'Waiting for vhost-user socket connection');
      assert.ok(existsSync(`${sock}.pid`), 'virtiofsd writes <socket>.pid');
      const f = TestFrontend.connect(sock);
      try {
        await f.start({ queues: 2, size: 1024 });
        assert.equal((await readThroughVirtiofs(f, 'hello', hello.length)).toString(), hello);
      } finally {
        f.close();
      }
      const [code] = await d.exit;
      assert.equal(code, 0, d.stderr());
      assert.equal(existsSync(`${sock}.pid`), false);
    } finally {
      d.proc.kill('SIGKILL');
    }
  });

  test('the Go runtime: a listening socket handed over as fd 3, no readiness wait, the log on syslog', async () => {
    const sock = join(work, 'vhost-fs.sock');
    const listenFd = native.listenUnix(sock, 16);
    // The syslog daemon's end (the runtime connects the daemon's stdout and stderr to /dev/null).
    const syslog = native.bindUnixDatagram(join(work, 'log.sock'));
    let d: Daemon;
    try {
      d = start(GO_ARGV(share), ['ignore', 'ignore', 'pipe', listenFd], { ...process.env, DAMSELFLY_SYSLOG_SOCKET: join(work, 'log.sock') });
    } finally {
      native.closeFd(listenFd);
    }
    try {
      // As QEMU right after the runtime's cmd.Start(): the connection waits in the backlog.
      const f = TestFrontend.connect(sock);
      try {
        await f.start({ queues: 2, size: 1024 });
        assert.equal((await readThroughVirtiofs(f, 'hello', hello.length)).toString(), hello);
      } finally {
        f.close();
      }
      const [code] = await d.exit;
      assert.equal(code, 0, d.stderr());
      const lines: string[] = [];
      for (let m = native.recvMsg(syslog, 65536); m !== null; m = native.recvMsg(syslog, 65536)) lines.push(m.data.toString());
      const pid = d.proc.pid as number;
      // facility daemon (3 << 3) | severity info (6): 30
      assert.ok(lines.some((l) => l.startsWith(`<30>damselfly[${pid}]: vhost-user socket listening {"component":"virtiofsd","sharedDir":`)), lines.join('\n'));
      assert.ok(lines.some((l) => l.startsWith(`<30>damselfly[${pid}]: vhost-user frontend gone; exiting`)), lines.join('\n'));
      assert.doesNotMatch(d.stderr(), /"level"/, 'no log line on stderr');
      assert.match(d.stderr(), /Waiting for vhost-user socket connection/, 'the readiness line stays on stderr');
    } finally {
      d.proc.kill('SIGKILL');
      native.closeFd(syslog);
    }
  });

  test('--syslog with nothing listening on the syslog socket: said on stderr, the log goes there instead', async () => {
    const sock = join(work, 'nosyslog.sock');
    const d = start([...GO_ARGV(share).filter((a) => a !== '--fd=3'), `--socket-path=${sock}`], ['ignore', 'ignore', 'pipe'], { ...process.env, DAMSELFLY_SYSLOG_SOCKET: join(work, 'absent', 'log.sock') });
    try {
      await waitFor(d, 'Waiting for vhost-user socket connection');
      assert.match(d.stderr(), /damselfly: --syslog: .*absent\/log\.sock.*; logging to stderr/);
      assert.match(d.stderr(), /"msg":"vhost-user socket listening"/);
    } finally {
      d.proc.kill('SIGKILL');
      await d.exit;
    }
  });
});
