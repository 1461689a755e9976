/** `damselfly build`: directories or OCI layers → a RAFS v6 image (bootstrap + blobs). */
import { type Command, Option } from 'commander';
import { UsageError } from '../base/index.js';
import { build } from '../builder/build.js';
import { buildRefImage, refConflicts } from '../builder/ref-build.js';
import { WHITEOUT_SPECS, type WhiteoutSpec } from '../builder/sources/dir.js';
import { nativeCodecs } from '../native/index.js';
import { getLogger, printJson, progressBar, run } from './common.js';
import { type FormatFlags, formatFromFlags, formatOptions } from './format-args.js';

interface BuildFlags extends FormatFlags {
  bootstrap?: string;
  blobDir: string;
  chunkDict?: string;
  inlineBootstrap?: boolean;
  json?: boolean;
  type: 'layers' | 'targz-ref' | 'tar-ref' | 'estargz-ref';
  whiteoutSpec: WhiteoutSpec;
}

export function register(program: Command): void {
  const cmd = program
    .command('build')
    .description('build a RAFS v6 image from directories or OCI layer tars (tar, tar.gz, tar.zst), bottom layer first')
    .argument('<source...>', 'a directory or an OCI layer file; several sources are stacked as layers with OCI whiteouts')
    .option('--bootstrap <file>', 'where to write the bootstrap')
    .requiredOption('--blob-dir <dir>', 'directory for the data blobs (named by blob id)');
  formatOptions(cmd)
    .option('--chunk-dict <bootstrap>', 'deduplicate against the chunks of an existing RAFS v6 image')
    .option('--inline-bootstrap', 'also store the bootstrap inside the top layer blob')
    .addOption(
      new Option(
        '--type <type>',
        'layers: data copied into new blobs; targz-ref, estargz-ref, tar-ref: layers indexed in place, the data stays in them (a .tar.gz or eStargz layer through ZRan, a plain .tar as it is; each type takes each, as nydus-image; gzip and sha256)',
      )
        .choices(['layers', 'targz-ref', 'estargz-ref', 'tar-ref'])
        .default('layers'),
    )
    .addOption(
      new Option(
        '--whiteout-spec <spec>',
        "how directory sources mark what they remove from the layers below: oci (.wh.NAME files), overlayfs (an overlayfs upper directory's 0/0 character devices and trusted.overlay.opaque=y directories) or none (every entry kept as it is); layer tars always use OCI's",
      )
        .choices([...WHITEOUT_SPECS])
        .default('oci'),
    )
    .option('--json', 'print the result as JSON')
    .action((sources: string[], flags: BuildFlags) =>
      run(async () => {
        const log = getLogger();
        if (flags.type !== 'layers') return buildRef(sources, flags);
        const bar = progressBar('build');
        const result = await build({
          sources,
          blobDir: flags.blobDir,
          ...(flags.bootstrap ? { bootstrapPath: flags.bootstrap } : {}),
          codecs: nativeCodecs,
          ...(await formatFromFlags(flags)),
          ...(flags.chunkDict ? { chunkDictPath: flags.chunkDict } : {}),
          inlineBootstrap: flags.inlineBootstrap === true,
          whiteoutSpec: flags.whiteoutSpec,
          log,
          onProgress: (done, total) => bar.update(done, total),
        });
        bar.stop();
        const summary = {
          bootstrap: result.bootstrapPath ?? null,
          bootstrapSize: result.bootstrap.length,
          blobs: result.blobs,
          blobTable: result.blobTable.map((b) => b.id),
          prefetch: result.prefetch,
          chunks: result.stats,
        };
        if (flags.json) {
          printJson(summary);
        } else {
          const s = result.stats;
          process.stdout.write(
            `bootstrap ${summary.bootstrap ?? '(inlined)'} (${summary.bootstrapSize} bytes)\n` +
              result.blobs.map((b) => `blob ${b.id} (${b.size} bytes, ${b.chunks} chunks)\n`).join('') +
              `chunks: ${s.chunks} read, ${s.stored} stored, ${s.dedupHits} deduplicated, ${s.dictHits} from the chunk dictionary; ` +
              `${s.bytesIn} bytes in, ${s.bytesStored} bytes stored\n`,
          );
        }
      }),
    );
}

/** `build --type targz-ref|tar-ref`: an image of gzip (ZRan) or plain tar layers, whose data stays where it is. */
async function buildRef(sources: string[], flags: BuildFlags): Promise<void> {
  if (flags.bootstrap === undefined) throw new UsageError(`--type ${flags.type} needs --bootstrap`);
  const format = await formatFromFlags(flags);
  const given = refConflicts({ ...format, ...(flags.inlineBootstrap === true ? { inlineBootstrap: true } : {}), chunkDict: flags.chunkDict });
  if (flags.whiteoutSpec !== 'oci') given.push('--whiteout-spec');
  if (given.length > 0) throw new UsageError(`--type ${flags.type} keeps the layers as they are: ${given.join(', ')} cannot apply`);
  const bar = progressBar('build');
  const r = await buildRefImage({
    sources,
    blobDir: flags.blobDir,
    bootstrapPath: flags.bootstrap,
    chunkSize: format.chunkSize,
    ...(format.prefetchFiles !== undefined ? { prefetchFiles: format.prefetchFiles } : {}),
    codecs: nativeCodecs,
    log: getLogger(),
    onProgress: (done, total) => bar.update(done, total),
  });
  bar.stop();
  const summary = { bootstrap: flags.bootstrap, bootstrapSize: r.bootstrap.length, blobs: r.blobs, prefetch: r.prefetch };
  if (flags.json) printJson(summary);
  else {
    process.stdout.write(
      `bootstrap ${flags.bootstrap} (${r.bootstrap.length} bytes)\n` +
        r.blobs
          .map((b) => {
            const where = b.kind === 'gzip' ? `${b.chunks} chunks in ${b.contexts} ZRan contexts` : `${b.chunks} chunks stored as they are (tar-ref)`;
            return `layer blob ${b.id} (data stays in the layer): ${where}; meta blob ${b.metaBlob.id} (${b.metaBlob.size} bytes)\n`;
          })
          .join(''),
    );
  }
}
