/**
 * A daemon taking over from the supervisor (nydusd's failover) refuses a state that names a
 * mountpoint twice, or in a form its mount table never keys (`/rafs/a/` beside `/rafs/a`): the
 * second was opened as a mount that nothing served and that no umount could name, its image open
 * for good. Nothing of such a state is opened.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Metrics, silentLogger } from '../../../src/base/index.js';
import { NydusDaemon, type RafsFactory } from '../../../src/daemon/index.js';
import { Vfs } from '../../../src/fs/vfs/index.js';
import { nativeCodecs } from '../../../src/native/index.js';
import { TestSupervisor } from '../../helpers/supervisor.js';
import { FakeFs } from '../fs/vfs-fake-fs.js';

test('a supervisor state naming a mountpoint twice, or not as the mount table keys it, is refused before anything is opened', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-takeover-'));
  const fifo = join(dir, 'fuse');
  execFileSync('mkfifo', [fifo]);
  const fakeFuse = openSync(fifo, 'r+'); // any pollable fd stands for the FUSE connection
  t.after(async () => {
    closeSync(fakeFuse);
    await rm(dir, { recursive: true, force: true });
  });
  const opened: string[] = [];
  const rafs: RafsFactory = async (req) => {
    opened.push(req.mountpoint);
    return { fs: new FakeFs(req.source), config: { id: 'cfg' }, backendType: 'localfs', close: async () => undefined };
  };
  const table = new Vfs({});
  table.mount('/rafs/a', Object.assign(new FakeFs('a'), { saveState: () => ({}) }));
  const request = { fs_type: 'rafs', source: join(dir, 'image.boot'), config: '{}' };
  const stateOf = (mountpoints: string[]): Buffer =>
    Buffer.from(JSON.stringify({ format: 'damselfly-fusedev-state-1', mountpoint: dir, session: null, mounts: mountpoints.map((mountpoint) => ({ mountpoint, request, bootstrapSha256: null })), vfs: table.saveMountTable() }));
  for (const [mountpoints, why] of [
    [['/rafs/a', '/rafs/a/'], /in a form this daemon never saves/],
    [['/rafs/a', '/rafs/a'], /twice/],
    [['/rafs//a'], /in a form this daemon never saves/],
  ] as const) {
    const supervisor = join(dir, 'supervisor.sock');
    const daemon = new NydusDaemon({ log: silentLogger, metrics: new Metrics(), codecs: nativeCodecs, rafs, supervisor, id: 'x', onExit: () => undefined });
    try {
      daemon.awaitTakeover({ mountpoint: dir, readOnly: true });
      const served = new TestSupervisor(supervisor).serve({ override: { data: stateOf([...mountpoints]), fd: fakeFuse } });
      await assert.rejects(daemon.takeover(), why);
      await served;
      assert.deepEqual(opened, [], 'nothing opened');
    } finally {
      await daemon.close();
    }
  }
});
