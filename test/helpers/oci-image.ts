/**
 * Builds OCI images for tests: an OCI image layout whose layers are gzip tars of directories
 * (GNU tar, as image builders write them), with a config and a tagged manifest.
 */
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { silentLogger } from '../../src/base/index.js';
import { MediaType } from '../../src/oci/media-types.js';
import { OciLayoutStore, hostArch, sha256Digest } from '../../src/oci/store.js';

/** Makes `layout` (an OCI layout dir) hold an image tagged `tag` with one layer per directory. */
export async function makeOciImage(layout: string, tag: string, layerDirs: string[], workDir: string): Promise<{ manifestDigest: string; layers: string[] }> {
  const store = new OciLayoutStore({ kind: 'oci-layout', dir: layout, tag }, silentLogger);
  const layers: Array<{ digest: string; size: number; diffId: string }> = [];
  for (const [i, dir] of layerDirs.entries()) {
    const file = join(workDir, `layer-${tag}-${i}.tar.gz`);
    const r = spawnSync('bash', ['-c', `tar --xattrs --xattrs-include='*' --numeric-owner -C '${dir}' -cf - . | gzip -n > '${file}'`]);
    if (r.status !== 0) throw new Error(`tar failed: ${r.stderr.toString()}`);
    const gz = await readFile(file);
    const digest = sha256Digest(gz);
    layers.push({ digest, size: gz.length, diffId: `sha256:${createHash('sha256').update(gunzipSync(gz)).digest('hex')}` });
    await store.putBlob(digest, gz);
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
    layers: layers.map((l) => ({ mediaType: MediaType.OCI_LAYER_GZIP, digest: l.digest, size: l.size })),
  };
  const manifestDigest = await store.putManifest(MediaType.OCI_MANIFEST, Buffer.from(JSON.stringify(manifest)));
  return { manifestDigest, layers: layers.map((l) => l.digest) };
}
