/**
 * Finding a Nydus image's bootstrap: the manifest layer annotated `nydus-bootstrap` (else the
 * last layer), a gzip tar holding `image/image.boot` (nydusify `BootstrapFileNameInLayer`).
 */
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { FormatError, IntegrityError, UsageError } from '../../base/index.js';
import { TarParser } from '../../format/tar.js';
import { Annotation, type Descriptor, type Manifest } from '../media-types.js';
import type { ImageStore, ResolvedManifest } from '../store.js';
import { createHash } from 'node:crypto';

/** The largest bootstrap accepted from a registry. */
const MAX_BOOTSTRAP = 1 << 30;

export function bootstrapDescriptor(m: Manifest, what: string): Descriptor {
  const annotated = m.layers.find((l) => l.annotations?.[Annotation.NYDUS_BOOTSTRAP] === 'true');
  if (annotated !== undefined) return annotated;
  throw new UsageError(`${what} is not a Nydus image (no layer is annotated ${Annotation.NYDUS_BOOTSTRAP})`);
}

/** Extracts `image/image.boot` from a bootstrap layer stream (gzip tar, or plain tar). */
export async function extractBootstrap(stream: AsyncIterable<Buffer>, digest: string): Promise<Buffer> {
  const hash = createHash('sha256');
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const c of stream) {
      hash.update(c);
      yield c;
    }
  }
  const source = Readable.from(hashed());
  const gunzip = source.pipe(createGunzip());
  const parser = new TarParser();
  let inBoot = false;
  const parts: Buffer[] = [];
  let size = 0;
  let found = false;
  try {
    for await (const chunk of gunzip) {
      for (const ev of parser.write(chunk as Buffer)) {
        if (ev.kind === 'entry') {
          const p = ev.entry.path.toString('latin1').replace(/^\.?\//, '');
          inBoot = ev.entry.type === 'file' && p === 'image/image.boot';
          if (inBoot) found = true;
        } else if (ev.kind === 'data' && inBoot) {
          size += ev.bytes.length;
          if (size > MAX_BOOTSTRAP) throw new FormatError('bootstrap layer too large');
          parts.push(Buffer.from(ev.bytes));
        } else if (ev.kind === 'entry-end') {
          inBoot = false;
        }
      }
    }
    parser.end();
  } catch (e) {
    if (e instanceof FormatError) throw e;
    throw new FormatError(`bootstrap layer ${digest}: ${(e as Error).message}`, { cause: e });
  }
  if (`sha256:${hash.digest('hex')}` !== digest) throw new IntegrityError(`bootstrap layer ${digest} does not match its digest`);
  if (!found) throw new FormatError(`bootstrap layer ${digest} holds no image/image.boot`);
  return Buffer.concat(parts);
}

export async function fetchBootstrap(store: ImageStore): Promise<{ resolved: ResolvedManifest; layer: Descriptor; bootstrap: Buffer }> {
  const resolved = await store.resolve();
  const layer = bootstrapDescriptor(resolved.manifest, store.name);
  const bootstrap = await extractBootstrap(store.blobStream(layer.digest), layer.digest);
  return { resolved, layer, bootstrap };
}
