#!/usr/bin/env node
// Bundles the compiled CLI (dist/cli/main.js, from `tsc`) and its packages into dist/bundle/,
// which bin/damselfly.js runs. A daemon starts in front of a waiting container, often with a cold
// page cache: loading ~190 modules of ours and ~230 files of node_modules one at a time cost
// ~0.4 s of its start-up (`mount --image` from an unshaped local registry, caches dropped, until
// mounted: 1.22-1.31 s -> 0.77-0.90 s; cold-start.sh's mount phase, with undici loaded lazily
// too: 0.96 s -> 0.76 s).
//
// - Packages with native parts stay outside (loaded from node_modules as before): the BLAKE3
//   binding. Our addon is loaded by absolute path (src/native/addon.ts), relative to the module
//   at the same depth as dist/native/, so dist/bundle/ resolves it the same way.
// - Code reached only through `import()` (the S3 client and its SDK) goes to chunks of its own,
//   loaded when first used.
// - The bundle is ESM; the CommonJS packages inside it call `require` for Node's built-ins, which
//   the banner provides.
// - Kata starts a virtiofsd for every sandbox and waits for it to listen: the virtiofsd entry point
//   (src/cli/main.ts imports it alone) must not load the image-serving code or the subcommands'
//   packages. A barrel import that would bring them back fails the build here (startup.ts: ready
//   in ~150 ms with 295 KB of bundle, ~200 ms with all 921 KB).
import { build } from 'esbuild';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const outdir = `${root}dist/bundle`;
await rm(outdir, { recursive: true, force: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: ['dist/cli/main.js'],
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['@napi-rs/blake-hash'],
  banner: { js: "import { createRequire as __damselflyCreateRequire } from 'node:module'; const require = __damselflyCreateRequire(import.meta.url);" },
  sourcemap: 'linked',
  logLevel: 'warning',
  metafile: true,
});

/** What the virtiofsd entry point may not load, by input path prefix. */
const NOT_FOR_VIRTIOFSD = ['node_modules/commander/', 'node_modules/undici/', 'node_modules/@aws-sdk/', 'node_modules/cli-progress/', 'dist/oci/', 'dist/builder/', 'dist/storage/backend/', 'dist/format/v6/'];
const outputs = result.metafile.outputs;
const entry = Object.keys(outputs).find((o) => outputs[o].entryPoint === 'dist/cli/virtiofsd-compat.js');
if (entry === undefined) throw new Error('bundle: no output for the virtiofsd entry point (dist/cli/virtiofsd-compat.js)');
const loaded = new Set();
for (const todo = [entry]; todo.length > 0; ) {
  const o = todo.pop();
  if (loaded.has(o)) continue;
  loaded.add(o);
  for (const i of outputs[o].imports) if (i.kind === 'import-statement' && !i.external) todo.push(i.path);
}
const wrong = [...loaded].flatMap((o) => Object.keys(outputs[o].inputs).filter((i) => NOT_FOR_VIRTIOFSD.some((p) => i.startsWith(p))));
if (wrong.length > 0) throw new Error(`bundle: the virtiofsd entry point loads ${wrong.length} modules it does not need, e.g. ${wrong.slice(0, 5).join(', ')}`);
