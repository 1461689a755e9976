/**
 * The executable decides its grammar from argv alone (`dispatch.ts`) before loading any command's
 * code, so it keeps its own list of the subcommands: it must name exactly those `program.ts`
 * registers, or a subcommand would be taken for virtiofsd's command line (or the reverse).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SUBCOMMANDS, cliMode } from '../../../src/cli/dispatch.js';
import { createProgram } from '../../../src/cli/program.js';

test('the dispatcher knows exactly the subcommands the program registers', async () => {
  const registered = (await createProgram()).commands.map((c) => c.name());
  assert.deepEqual([...SUBCOMMANDS].sort(), [...registered].sort());
  for (const name of registered) {
    assert.deepEqual(cliMode([name, '--help'], SUBCOMMANDS), { mode: 'commander', subcommand: name });
    assert.deepEqual(cliMode(['--log-level', 'warn', name], SUBCOMMANDS), { mode: 'commander', subcommand: name });
    // The program made for one subcommand registers that one alone (and loads no other's code).
    assert.deepEqual((await createProgram([name])).commands.map((c) => c.name()), [name]);
  }
  assert.deepEqual(cliMode(['--help'], SUBCOMMANDS), { mode: 'commander' }, 'help lists every subcommand');
  assert.deepEqual(cliMode(['--version'], SUBCOMMANDS), { mode: 'commander', version: true }, '--version needs none');
  assert.deepEqual(cliMode(['--log-level', 'warn', '-V'], SUBCOMMANDS), { mode: 'commander', version: true });
  assert.deepEqual((await createProgram([])).commands.map((c) => c.name()), []);
  assert.equal(cliMode(['--socket-path=/s', '--shared-dir=/d'], SUBCOMMANDS).mode, 'virtiofsd');
  // nydusd: `virtiofs` with its API or vhost-user socket, and `fuse` (no damselfly subcommand has the name).
  assert.deepEqual(cliMode(['virtiofs', '--apisock', '/a', '--sock', '/s'], SUBCOMMANDS), { mode: 'nydusd', subcommand: 'virtiofs', argv: ['--apisock', '/a', '--sock', '/s'] });
  assert.deepEqual(cliMode(['--log-level', 'warn', 'fuse', '--mountpoint', '/m'], SUBCOMMANDS), { mode: 'nydusd', subcommand: 'fuse', argv: ['--mountpoint', '/m'], logLevel: 'warn' });
  assert.ok(!SUBCOMMANDS.includes('fuse'));
});
