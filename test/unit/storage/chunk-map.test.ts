/**
 * The chunk map's locking never blocks the event loop. Users hold a shared flock on the map; the
 * last one to close takes it exclusively for a moment, and `cache gc` takes it exclusively to
 * remove a blob. Opening the map while someone holds it exclusively used to call a blocking
 * flock(2) on the event loop thread: every request of the daemon stopped meanwhile, and when the
 * holder was the same process (a cache closing while a late reader opened it again) it never
 * ended.
 */
import assert from 'node:assert/strict';
import { mkdtemp, open, readdir, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DamselflyError, ErrorCode } from '../../../src/base/index.js';
import { native } from '../../../src/native/index.js';
import { ChunkMap } from '../../../src/storage/cache/chunk-map.js';
import { LOCK_EX, LOCK_NB, LOCK_SH } from '../../../src/native/index.js';

test('opening a map held exclusively waits without blocking the event loop, and opens once the holder lets go', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-chunk-map-'));
  try {
    const path = join(dir, 'blob.chunk_map.dfly');
    const first = await ChunkMap.open(path);
    await first.map.markPresent(3);
    await first.map.close(true);

    // Another descriptor of this process holds the map exclusively (as close() and cache gc do).
    const holder = await open(path, 'r+');
    assert.equal(native.flock(holder.fd, LOCK_EX | LOCK_NB), true);
    let opened = false;
    const opening = ChunkMap.open(path).then((r) => {
      opened = true;
      return r;
    });
    // The event loop runs on: timers fire while the open waits.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    await new Promise((r) => setTimeout(r, 60));
    clearInterval(timer);
    assert.ok(ticks >= 3, `timers ran while the open waited (${ticks})`);
    assert.equal(opened, false, 'the open waits for the exclusive holder');

    await holder.close(); // lets go
    const second = await opening;
    assert.equal(second.uncleanShutdown, false, 'the first user closed cleanly');
    assert.equal(second.map.state(3), 1, 'the mark made before is there');
    // It holds the map shared now: nobody may take it exclusively (gc's check), a sharer may.
    const probe = await open(path, 'r+');
    assert.equal(native.flock(probe.fd, LOCK_EX | LOCK_NB), false, 'held shared by the new user');
    assert.equal(native.flock(probe.fd, LOCK_SH | LOCK_NB), true);
    await probe.close();
    await second.map.close(true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a holder that keeps the map exclusively past the wait bound: the open fails naming the map, and keeps no descriptor', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-chunk-map-'));
  try {
    const path = join(dir, 'blob.chunk_map.dfly');
    await (await ChunkMap.open(path)).map.close(true);
    const holder = await open(path, 'r+');
    assert.equal(native.flock(holder.fd, LOCK_EX | LOCK_NB), true);
    const t0 = Date.now();
    await assert.rejects(ChunkMap.open(path, { lockWaitMs: 100 }), (e: unknown) => e instanceof DamselflyError && e.code === ErrorCode.Aborted && e.message.includes(path));
    const ms = Date.now() - t0;
    assert.ok(ms >= 100 && ms < 2000, `gave up after ${ms} ms`);
    const open_: string[] = [];
    for (const fd of await readdir('/proc/self/fd')) if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')) === path) open_.push(fd);
    assert.equal(open_.length, 1, 'only the holder has the map open');
    await holder.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
