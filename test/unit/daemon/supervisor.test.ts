/**
 * The supervisor connection (nydusd's failover and live upgrade) never blocks the event loop: a
 * supervisor that listens but does not accept, its queue full, made connect(2) wait on the main
 * thread, and the whole daemon (API, every mount's requests) with it, for as long as it liked.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { restoreFromSupervisor, saveToSupervisor } from '../../../src/daemon/supervisor.js';
import { native } from '../../../src/native/index.js';

test('a supervisor whose queue is full makes sending and receiving the state fail in time, the event loop running meanwhile', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-supervisor-'));
  const path = join(dir, 'supervisor.sock');
  const listener = native.listenUnix(path, 1);
  const pending: number[] = [];
  t.after(async () => {
    for (const fd of [...pending, listener]) native.closeFd(fd);
    await rm(dir, { recursive: true, force: true });
  });
  // Fill its queue: connections it never accepts.
  for (let fd = native.connectUnix(path, false, true); fd >= 0; fd = native.connectUnix(path, false, true)) {
    pending.push(fd);
    assert.ok(pending.length < 100, 'the queue never filled');
  }
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 10);
  try {
    const started = Date.now();
    await assert.rejects(saveToSupervisor(path, Buffer.from('state'), 0, 300), /did not accept the connection in time/);
    await assert.rejects(restoreFromSupervisor(path, 300), /did not accept the connection in time/);
    const took = Date.now() - started;
    assert.ok(took >= 550 && took < 3000, `${took} ms`);
    assert.ok(ticks >= 20, `the event loop ran ${ticks} timer ticks in ${took} ms`);
  } finally {
    clearInterval(ticker);
  }
  // A supervisor that is not there at all is an error at once.
  await assert.rejects(saveToSupervisor(join(dir, 'none.sock'), Buffer.from('state'), 0, 300), /cannot connect to the supervisor/);
});
