/**
 * Builds OCI images for tests: an OCI image layout whose layers are gzip tars of directories
 * (GNU tar, as image builders write them; or plain tars, where asked), or given layer files, with
 * a config and a tagged manifest.
 */
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { silentLogger } from '../../src/base/index.js';
import { MediaType } from '../../src/oci/media-types.js';
import { OciLayoutStore, hostArch, sha256Digest } from '../../src/oci/store.js';

/**
 * Makes `layout` (an OCI layout dir) hold an image tagged `tag` with one layer per directory;
 * the layers whose indexes `opts.plainLayers` lists are plain tars (`OCI_LAYER`), the others gzip.
 */
export async function makeOciImage(layout: string, tag: string, layerDirs: string[], workDir: string, opts: { plainLayers?: number[] } = {}): Promise<{ manifestDigest: string; layers: string[] }> {
  const files: string[] = [];
  for (const [i, dir] of layerDirs.entries()) {
    const plain = opts.plainLayers?.includes(i) === true;
    const file = join(workDir, `layer-${tag}-${i}.tar${plain ? '' : '.gz'}`);
    const r = spawnSync('bash', ['-c', `tar --xattrs --xattrs-include='*' --numeric-owner -C '${dir}' -cf - . ${plain ? '' : '| gzip -n'} > '${file}'`]);
    if (r.status !== 0) throw new Error(`tar failed: ${r.stderr.toString()}`);
    files.push(file);
  }
  return ociImageOfLayers(layout, tag, files);
}

/**
 * Makes `layout` hold an image tagged `tag` whose layers are `files`, bottom first: plain tars
 * (`OCI_LAYER`), or gzip where the name ends in `.gz`.
 */
export async function ociImageOfLayers(layout: string, tag: string, files: string[]): Promise<{ manifestDigest: string; layers: string[] }> {
  const store = new OciLayoutStore({ kind: 'oci-layout', dir: layout, tag }, silentLogger);
  const layers: Array<{ digest: string; size: number; diffId: string; mediaType: string }> = [];
  for (const file of files) {
    const plain = !file.endsWith('.gz');
    const bytes = await readFile(file);
    const digest = sha256Digest(bytes);
    const diffId = plain ? digest : `sha256:${createHash('sha256').update(gunzipSync(bytes)).digest('hex')}`;
    layers.push({ digest, size: bytes.length, diffId, mediaType: plain ? MediaType.OCI_LAYER : MediaType.OCI_LAYER_GZIP });
    await store.putBlob(digest, bytes);
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: hostArch(),
      os: 'linux',
      config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/bin:/bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created_by: `layer ${i}` })),
    }),
  );
  const configDigest = sha256Digest(config);
  await store.putBlob(configDigest, config);
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    config: { mediaType: MediaType.OCI_CONFIG, digest: configDigest, size: config.length },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  const manifestDigest = await store.putManifest(MediaType.OCI_MANIFEST, Buffer.from(JSON.stringify(manifest)));
  return { manifestDigest, layers: layers.map((l) => l.digest) };
}
