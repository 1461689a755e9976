/**
 * `damselfly pattern` asks a daemon's API socket: a daemon that accepts the connection but never
 * answers gives an error within the timeout (it used to wait for ever).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { type Server, type Socket, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { apiGet } from '../../../src/cli/pattern.js';

test('a silent API socket: an error within the timeout', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-apiget-'));
  const sockets: Socket[] = [];
  const server: Server = createServer((s) => void sockets.push(s)); // reads nothing, answers nothing
  try {
    const path = join(dir, 'api.sock');
    await new Promise<void>((r) => server.listen(path, r));
    const t0 = Date.now();
    await assert.rejects(apiGet(path, '/api/v1/metrics/pattern', 300), /did not answer within 0.3 s/);
    const ms = Date.now() - t0;
    assert.ok(ms >= 250 && ms < 5000, `${ms} ms`);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  }
});
