/**
 * Seeded mutation fuzzing of what a daemon taking over a FUSE connection reads from the
 * supervisor (nydusd's failover and live upgrade): the mount table's saved state (session flags,
 * pseudo directories, mount slots, backends' states) and the FUSE session, with values replaced
 * by every JSON type and boundary value, keys removed, renamed and added. Each mutant must be
 * restored, or refused with an Error that says what is wrong (never a TypeError or RangeError from
 * reading what is not there); a restored table must answer the kernel with replies or FsErrors.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FsError, type RequestContext } from '../../src/fs/types.js';
import { Vfs } from '../../src/fs/vfs/index.js';
import { FuseServer } from '../../src/fuse/index.js';
import { Metrics, silentLogger } from '../../src/base/index.js';
import { mutateJson } from '../helpers/json-mutation.js';
import { caseRng } from '../helpers/rng.js';
import { FakeFs } from '../unit/fs/vfs-fake-fs.js';

const MUTANTS = 3000;
const ctx: RequestContext = { uid: 0, gid: 0, pid: 1 };

class SavingFs extends FakeFs {
  saveState(): unknown {
    return { lookups: [...this.lookups] };
  }
  restoreState(state: unknown): void {
    const l = (state as { lookups?: unknown } | null)?.lookups;
    if (!Array.isArray(l)) throw new Error('no lookups');
    for (const e of l) {
      if (!Array.isArray(e) || !Number.isSafeInteger(e[0]) || !Number.isSafeInteger(e[1])) throw new Error('bad lookup');
      this.lookups.set(e[0] as number, e[1] as number);
    }
  }
}

const files = { 'etc/os-release': 'ID=test\n', 'bin/sh': '#!' };

async function savedState(): Promise<unknown> {
  const vfs = new Vfs();
  vfs.mount('/containers', new SavingFs('shared', { files: { 'cid/rootfs/': '' } }));
  vfs.mount('/rafs/abc/lowerdir', new SavingFs('image', { files }));
  vfs.mount('/rafs/gone/lowerdir', new SavingFs('gone', { files }));
  vfs.init({ flags: 1n << 13n });
  let id = 1;
  for (const part of ['rafs', 'abc', 'lowerdir', 'bin', 'sh']) id = (await vfs.lookup(ctx, id, Buffer.from(part))).nodeid;
  await vfs.lookup(ctx, (await vfs.lookup(ctx, (await vfs.lookup(ctx, 1, Buffer.from('rafs'))).nodeid, Buffer.from('gone'))).nodeid, Buffer.from('lowerdir'));
  vfs.umount('/rafs/gone/lowerdir');
  return JSON.parse(JSON.stringify(vfs.saveMountTable()));
}

function isCarelessError(e: unknown): boolean {
  return e instanceof TypeError || e instanceof RangeError || !(e instanceof Error);
}

test('mutated mount-table states are restored or refused by name; a restored table answers', async () => {
  const seed = await savedState();
  const keys = ['session', 'transparent', 'pseudo', 'slots', 'backends', 'nodes', 'nextId', 'rootTime', 'fresh', 'cursor', 'index', 'path', 'mounted', 'refs', 'id', 'lookups', 'time', 'sec', 'nsec'];
  let restored = 0;
  for (let i = 0; i < MUTANTS; i++) {
    const rng = caseRng('handover-state', i);
    const mutant = mutateJson(seed, rng, { keys });
    const vfs = new Vfs();
    try {
      vfs.restoreMountTable(mutant as unknown as Parameters<Vfs['restoreMountTable']>[0], (path) => new SavingFs(path, { files }));
    } catch (e) {
      assert.ok(!isCarelessError(e), `mutant ${i}: ${String(e)}\n${JSON.stringify(mutant).slice(0, 600)}`);
      continue;
    }
    restored++;
    for (const id of [1, 2, 3, 2 ** 40 + 1, 2 ** 40 * 2 + 5, 2 ** 40 * 3 + 2]) {
      try {
        await vfs.getattr(ctx, id);
        await vfs.lookup(ctx, id, Buffer.from('bin'));
      } catch (e) {
        assert.ok(e instanceof FsError, `mutant ${i}, node id ${id}: ${String(e)}\n${JSON.stringify(mutant).slice(0, 600)}`);
      }
    }
  }
  assert.ok(restored > 0 && restored < MUTANTS, `some mutants restore, others are refused (${restored} of ${MUTANTS} restored)`);
});

test('mutated FUSE session states are continued or refused by name', () => {
  const seed = { flags: String((1n << 13n) | (1n << 30n)), minor: 41, maxWrite: 1 << 20 };
  let continued = 0;
  for (let i = 0; i < MUTANTS; i++) {
    const mutant = mutateJson(seed, caseRng('handover-session', i), { keys: ['flags', 'minor', 'maxWrite'] });
    const server = new FuseServer(new Vfs(), { log: silentLogger, metrics: new Metrics() });
    try {
      server.restoreSession(mutant as unknown as Parameters<FuseServer['restoreSession']>[0]);
      continued++;
      assert.equal(server.initialized, true);
    } catch (e) {
      assert.ok(!isCarelessError(e), `mutant ${i}: ${String(e)}: ${JSON.stringify(mutant).slice(0, 300)}`);
    }
  }
  assert.ok(continued > 0 && continued < MUTANTS, `${continued} of ${MUTANTS} continued`);
});
