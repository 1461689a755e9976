/**
 * The `damselfly` executable. The same program is a drop-in for virtiofsd (no subcommand,
 * virtiofsd's options) and for nydusd's virtio-fs and FUSE daemons (`virtiofs --apisock … --sock …`,
 * `fuse --mountpoint …`), and
 * has its own subcommands (`program.ts`); `dispatch.ts` tells the three apart from argv alone.
 * Each loads only its own code: Kata starts a virtiofsd for every sandbox and waits for its
 * socket, and the subcommands' code (commander, the registry client, the builder, …) is most of
 * the bundle.
 */
import { setFlagsFromString } from 'node:v8';
import { SUBCOMMANDS, cliMode, printCapabilities } from './dispatch.js';

// undici parses HTTP with llhttp compiled to WebAssembly. V8 compiles it at once with its baseline
// compiler (Liftoff) and, once the parser is hot, again with TurboFan on a background thread:
// ~0.3 s of CPU (perf: ExecuteTurbofanWasmCompilation) in the first second of a daemon that
// fetches from a registry, which is when the container it serves starts on the same cores. The
// baseline code parses as fast for this traffic (a 68 MB blob GET: 0.61 s of main-thread CPU,
// 0.65 s with TurboFan). These flags are read when a module is compiled, which happens later.
setFlagsFromString('--no-wasm-dynamic-tiering');
setFlagsFromString('--no-wasm-tier-up');

if (process.argv.includes('--print-capabilities')) {
  // As vhost-user backends do: print the capabilities and exit, ignoring every other argument.
  printCapabilities();
} else {
  const mode = cliMode(process.argv.slice(2), SUBCOMMANDS);
  if (mode.mode === 'virtiofsd') {
    const { passthroughFactory, runVirtiofsd } = await import('./virtiofsd-compat.js');
    process.exit(await runVirtiofsd(mode.argv, { passthrough: passthroughFactory }));
  } else if (mode.mode === 'nydusd') {
    const [{ passthroughFactory }, { runNydusd }] = await Promise.all([import('./virtiofsd-compat.js'), import('./nydusd-compat.js')]);
    process.exit(await runNydusd(mode.subcommand, mode.argv, { passthrough: passthroughFactory, ...(mode.logLevel ? { logLevel: mode.logLevel } : {}) }));
  } else {
    const { createProgram } = await import('./program.js');
    const only = mode.version ? [] : mode.subcommand !== undefined ? [mode.subcommand] : undefined;
    await (await createProgram(only)).parseAsync(process.argv);
  }
}
