/**
 * RLIMIT_NOFILE at a sharing daemon's start (`--rlimit-nofile`, as virtiofsd and nydusd): raised
 * to the wanted count within the hard limit, never lowered, left alone for 0, and a warning (the
 * limit kept) where the hard limit cannot be raised. Run in a child process, whose limits are
 * lowered first: a process cannot raise its hard limit again without CAP_SYS_RESOURCE.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { REPO } from '../../helpers/env.js';

const SCRIPT = `
import { raiseNofileLimit } from './src/daemon/fd-limit.ts';
import { native } from './src/native/index.ts';
const warnings = [];
const log = { debug() {}, warn: (o, m) => warnings.push(m), child() { return log; } };
const out = {};
native.setNofileLimit(256, 512);
out.zero = [raiseNofileLimit(0, log), native.getNofileLimit()];
out.lower = [raiseNofileLimit(100, log), native.getNofileLimit()];
out.within = [raiseNofileLimit(400, log), native.getNofileLimit()];
out.warnedBefore = warnings.length;
native.setNofileLimit(400, 400);
let privileged = true;
try { native.setNofileLimit(400, 401); native.setNofileLimit(400, 400); } catch { privileged = false; }
const above = raiseNofileLimit(600, log);
out.above = [above, privileged, warnings.length];
console.log(JSON.stringify(out));
`;

test('the open-file limit: raised within the hard limit, never lowered, 0 leaves it, a warning past the hard limit', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], { cwd: REPO, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.deepEqual(out['zero'], [256, [256, 512]]);
  assert.deepEqual(out['lower'], [256, [256, 512]], 'never lowered');
  assert.deepEqual(out['within'], [400, [400, 512]]);
  assert.equal(out['warnedBefore'], 0);
  const [above, privileged, warned] = out['above'] as [number, boolean, number];
  // With CAP_SYS_RESOURCE (root on a host) the hard limit goes up too; without it, a warning.
  if (privileged) assert.equal(above, 600);
  else assert.deepEqual([above, warned], [400, 1]);
});
