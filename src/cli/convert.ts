/**
 * `damselfly convert`: an OCI image (registry or OCI layout) to a Nydus image (RAFS v6), pushed as
 * an OCI artifact nydus-snapshotter accepts.
 */
import type { Command } from 'commander';
import { type Logger, UsageError } from '../base/index.js';
import { nativeCodecs } from '../native/index.js';
import { convertImage } from '../oci/convert/convert.js';
import { parseImageRef } from '../oci/reference.js';
import { RegistryClient, credentialsForHost } from '../oci/registry/index.js';
import { type ImageStore, OciLayoutStore, RegistryStore } from '../oci/store.js';
import { getLogger, printJson, progressBar, run } from './common.js';
import { type FormatFlags, formatFromFlags, formatOptions } from './format-args.js';

interface ConvertFlags extends FormatFlags {
  source: string;
  target: string;
  chunkDict?: string;
  ociRef?: boolean;
  plainHttp?: boolean;
  sourceCreds?: string;
  targetCreds?: string;
  workDir?: string;
  json?: boolean;
}

function creds(v: string | undefined, what: string): { username: string; password: string } | undefined {
  if (v === undefined) return undefined;
  const i = v.indexOf(':');
  if (i <= 0) throw new UsageError(`${what} must be USER:PASSWORD`);
  return { username: v.slice(0, i), password: v.slice(i + 1) };
}

/**
 * The chunk dictionary's credentials: the target's when it is on the target's registry (the usual
 * case: nydusify's dictionary lives next to the images it serves), else none (those saved for its
 * host): a password given for one registry never goes to another.
 */
function dictCreds(dict: string, target: string, targetCreds: { username: string; password: string } | undefined): { username: string; password: string } | undefined {
  const d = parseImageRef(dict);
  const t = parseImageRef(target);
  return d.kind === 'registry' && t.kind === 'registry' && d.host.toLowerCase() === t.host.toLowerCase() ? targetCreds : undefined;
}

function openStore(ref: string, plainHttp: boolean, credentials: { username: string; password: string } | undefined, log: Logger, clients: RegistryClient[]): ImageStore {
  const r = parseImageRef(ref);
  if (r.kind === 'oci-layout') return new OciLayoutStore(r, log);
  // Without credentials on the command line: those a `docker login` (or podman's, skopeo's) saved.
  const auth = credentials ?? credentialsForHost(r.host, log);
  const client = new RegistryClient({ host: r.host, scheme: plainHttp ? 'http' : 'https', ...(auth ? { credentials: auth } : {}), retryLimit: 3, timeoutMs: 30_000, log });
  clients.push(client);
  return new RegistryStore(client, r);
}

export function register(program: Command): void {
  const cmd = program
    .command('convert')
    .description('convert an OCI image to a Nydus (RAFS v6) image: one blob per layer and a bootstrap layer, pushed to the target')
    .requiredOption('--source <ref>', 'docker://HOST/REPO:TAG or oci:DIR[:TAG]')
    .requiredOption('--target <ref>', 'docker://HOST/REPO:TAG or oci:DIR[:TAG]')
    .option('--chunk-dict <ref>', 'a Nydus image whose chunks are reused instead of stored again')
    .option('--oci-ref', 'index the layers in place (nydusify --oci-ref; gzip layers through ZRan, plain tar layers as tar-ref): push a meta blob per layer and the bootstrap, no data; the image reads the original layers, which must stay in the target repository')
    .option('--plain-http', 'talk plain http to the registries')
    .option('--source-creds <user:password>', 'credentials for the source registry')
    .option('--target-creds <user:password>', 'credentials for the target registry (and for the chunk dictionary when it is on the same registry)');
  formatOptions(cmd)
    .option('--work-dir <dir>', 'where layers and blobs are staged (default: a temporary directory)')
    .option('--json', 'print the result as JSON')
    .action((flags: ConvertFlags) =>
      run(async () => {
        const log = getLogger();
        const clients: RegistryClient[] = [];
        const plain = flags.plainHttp === true;
        const source = openStore(flags.source, plain, creds(flags.sourceCreds, '--source-creds'), log, clients);
        const targetRef = parseImageRef(flags.target);
        if (targetRef.kind === 'registry' && targetRef.digest !== undefined) throw new UsageError(`--target ${flags.target}: name the image to push by a tag, not by a digest (the new manifest cannot have it)`);
        const target = openStore(flags.target, plain, creds(flags.targetCreds, '--target-creds'), log, clients);
        const chunkDict = flags.chunkDict !== undefined ? openStore(flags.chunkDict, plain, dictCreds(flags.chunkDict, flags.target, creds(flags.targetCreds, '--target-creds')), log, clients) : undefined;
        const bars = new Map<string, ReturnType<typeof progressBar>>();
        try {
          const r = await convertImage({
            source,
            target,
            ...(chunkDict ? { chunkDict } : {}),
            ...(flags.ociRef === true ? { ociRef: true } : {}),
            codecs: nativeCodecs,
            ...(await formatFromFlags(flags)),
            ...(flags.workDir ? { workDir: flags.workDir } : {}),
            log,
            onProgress: (phase, done, total) => {
              let bar = bars.get(phase);
              if (bar === undefined) bars.set(phase, (bar = progressBar(phase)));
              bar.update(done, total);
            },
          });
          for (const b of bars.values()) b.stop();
          if (flags.json) printJson(r);
          else process.stdout.write(`converted ${flags.source} (${r.layers} layers) to ${flags.target}: manifest ${r.manifestDigest}, ${r.blobs.length} blobs, bootstrap layer ${r.bootstrapDigest}\n`);
        } finally {
          await Promise.all(clients.map((c) => c.close()));
        }
      }),
    );
}
