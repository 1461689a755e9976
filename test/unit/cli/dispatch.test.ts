/**
 * The executable decides its grammar from argv alone (`dispatch.ts`) before loading any command's
 * code, so it keeps its own list of the subcommands: it must name exactly those `program.ts`
 * registers, or a subcommand would be taken for virtiofsd's command line (or the reverse).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SUBCOMMANDS, cliMode } from '../../../src/cli/dispatch.js';
import { createProgram } from '../../../src/cli/program.js';

test('the dispatcher knows exactly the subcommands the program registers', () => {
  const registered = createProgram().commands.map((c) => c.name());
  assert.deepEqual([...SUBCOMMANDS].sort(), [...registered].sort());
  for (const name of registered) assert.equal(cliMode([name, '--help'], SUBCOMMANDS).mode, 'commander', name);
  assert.equal(cliMode(['--socket-path=/s', '--shared-dir=/d'], SUBCOMMANDS).mode, 'virtiofsd');
});
