/**
 * A real Linux guest under QEMU (TCG) mounting a Damselfly image over virtio-fs from
 * `damselfly virtiofs`: inside the guest the sha256 of every file, `find`, `stat`, `readlink`,
 * xattrs and hardlink groups match the source tree, and a static binary from the image runs.
 * The same with Kata's QEMU line (memory-backend-file on /dev/shm, queue-size 1024), with two
 * request queues, after memory hot-plug through QMP while a reader runs, and after a reboot in the
 * same QEMU process. The host runs the very same script (busybox) on the source tree.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { damselflyOk, requireTool } from '../helpers/env.js';
import { type GuestImage, bootGuest, buildInitramfs, guestMissing } from '../helpers/guest.js';
import { makeTree } from '../helpers/tree.js';
import { type VirtiofsDaemon, startVirtiofsDaemon } from '../helpers/vhost-frontend.js';

requireTool(guestMissing());

/** Prints the view of the tree under $ROOT that guest and host must agree on, in sections. */
const VIEW = `
cd "$ROOT" || exit 90
echo @@FIND; find . | sort
echo @@STAT; find . ! -type d -exec stat -c '%n|%F|%a|%u|%g|%s|%y|%h|%t,%T' {} + | sort
echo @@DIRS; find . -type d -exec stat -c '%n|%a|%u|%g|%y|%h' {} + | sort
echo @@SHA; find . -type f -exec sha256sum {} + | sort
echo @@LINK; find . -type l | sort | while IFS= read -r l; do echo "$l|$(readlink "$l")"; done
echo @@XATTR; find . -exec xattrs {} + | sort
echo @@HARD; find . -type f -links +1 -exec stat -c '%i %n' {} + | sort -n | awk '{ if ($1 != last) { if (g) print g; g = $2 } else g = g " " $2; last = $1 } END { if (g) print g }' | sort
echo @@END
`;

/** Guest only: no kernel messages in the middle of the lines the test parses. */
const QUIET = 'dmesg -n 1 2>/dev/null\n';

function sections(lines: string[]): Map<string, string> {
  const m = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const l of lines) {
    if (l.startsWith('@@')) m.set(l.slice(2), (cur = []));
    else cur?.push(l);
  }
  return new Map([...m].map(([k, v]) => [k, v.join('\n')]));
}

function startDaemon(work: string, socket: string, extra: string[] = []): Promise<VirtiofsDaemon> {
  return startVirtiofsDaemon(socket, ['--bootstrap', join(work, 'boot'), '--blob-dir', join(work, 'blobs'), ...extra]);
}

describe('Damselfly virtiofs serving a Linux guest', () => {
  let work: string;
  let src: string;
  let guestImage: GuestImage;
  let hostView: Map<string, string>;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-guest-'));
    src = join(work, 'src');
    await makeTree(src, { bigDirEntries: 300 });
    await copyFile('/bin/busybox', join(src, 'busybox'));
    await damselflyOk(['build', '--bootstrap', join(work, 'boot'), '--blob-dir', join(work, 'blobs'), src]);
    guestImage = await buildInitramfs();
    assert.ok(guestImage.xattrsHelper, 'the xattrs helper was built');
    const r = spawnSync('busybox', ['sh', '-c', VIEW], { env: { ...process.env, ROOT: src, PATH: `${dirname(guestImage.xattrsHelper)}:/bin:/usr/bin` }, encoding: 'utf8', maxBuffer: 64 << 20 });
    assert.equal(r.status, 0, r.stderr);
    hostView = sections(r.stdout.split('\n'));
    // The view is substantial (the comparison below would be empty otherwise).
    assert.ok((hostView.get('STAT') ?? '').split('\n').length > 300, 'host view lists the tree');
    assert.ok((hostView.get('XATTR') ?? '').includes('security.capability'));
    assert.ok((hostView.get('HARD') ?? '').includes('hard-a'));
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  function compare(lines: string[], what: string): void {
    const guest = sections(lines);
    for (const [name, host] of hostView) assert.equal(guest.get(name), host, `${what}: section ${name} differs`);
  }

  test('the guest sees exactly the source tree and runs a static binary from the image', async () => {
    const socket = join(work, 'a.sock');
    const d = await startDaemon(work, socket, ['--cache-dir', join(work, 'cache')]);
    const guest = await bootGuest({
      devices: [{ socket, tag: 'img' }],
      script: `${QUIET}ROOT=/mnt/img\n${VIEW}\necho @@EXEC\n/mnt/img/busybox echo static-binary-ran $((6 * 7))\n/mnt/img/setuid\n`,
      timeoutMs: 240_000,
    });
    const r = await guest.wait();
    assert.equal(r.status, 0, r.console.slice(-3000));
    const out = guest.output();
    compare(out, 'default QEMU line');
    assert.ok(out.includes('static-binary-ran 42'));
    assert.ok(out.includes('setuid'));
    await d.exit; // the daemon exits when QEMU disconnects
    assert.equal(d.proc.exitCode, 0, d.stderr());
  });

  test("Kata's QEMU line with two request queues, memory hot-plug under a reader, and a reboot", async () => {
    const socket = join(work, 'b.sock');
    const d = await startDaemon(work, socket);
    // Boot 1 starts a reader, waits for hot-plugged memory to come online, then checks the tree
    // again; boot 2 (after the guest reboots itself) checks the tree once more.
    const script = `${QUIET}
ROOT=/mnt/img
if [ "$DAMSELFLY_BOOT" = 1 ]; then
  ( while [ ! -e /tmp/stop ]; do sha256sum /mnt/img/busybox /mnt/img/dir/multi-chunk.bin >> /tmp/reads; done ) &
  before=$(cat /sys/devices/system/memory/memory*/online | grep -c 1)
  echo READER-RUNNING $before
  i=0
  while [ $(cat /sys/devices/system/memory/memory*/online | grep -c 1) -le $before ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
  echo MEMORY-ONLINE $(cat /sys/devices/system/memory/memory*/online | grep -c 1)
  sleep 2
  touch /tmp/stop; wait
  echo READS $(sort -u /tmp/reads | wc -l)
fi
${VIEW}
`;
    const guest = await bootGuest({
      devices: [{ socket, tag: 'img', queueSize: 1024, requestQueues: 2 }],
      memBackend: 'file',
      memory: '1G',
      qmp: true,
      reboots: 1,
      script,
      timeoutMs: 420_000,
    });
    await guest.waitForMarker('READER-RUNNING', { timeoutMs: 240_000 });
    await guest.hotplugMemory(256 << 20);
    const r = await guest.wait();
    assert.equal(r.status, 0, r.console.slice(-3000));
    assert.equal(r.boots, 2);
    const first = guest.output(1);
    assert.ok(first.some((l) => l.startsWith('MEMORY-ONLINE')), 'memory came online');
    // The reader saw exactly one digest per file the whole time (never wrong bytes).
    assert.ok(first.includes('READS 2'), first.filter((l) => l.startsWith('READS')).join());
    compare(first, 'after memory hot-plug');
    compare(guest.output(2), 'after a reboot in the same QEMU');
    await d.exit;
    assert.equal(d.proc.exitCode, 0, d.stderr());
  });
});
