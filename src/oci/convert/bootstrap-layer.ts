/**
 * Finding a Nydus image's bootstrap: the manifest layer annotated `nydus-bootstrap` (else the
 * last layer), a gzip tar holding `image/image.boot` (nydusify `BootstrapFileNameInLayer`).
 */
import { FormatError, IntegrityError, UsageError } from '../../base/index.js';
import { gunzipStream } from '../../builder/sources/layer-stream.js';
import { TarParser } from '../../format/tar.js';
import { StreamDigest } from '../registry/index.js';
import { Annotation, type Descriptor, type Manifest } from '../media-types.js';
import type { ImageStore, ResolvedManifest } from '../store.js';

/** The largest bootstrap accepted from a registry. */
const MAX_BOOTSTRAP = 1 << 30;

export function bootstrapDescriptor(m: Manifest, what: string): Descriptor {
  const annotated = m.layers.find((l) => l.annotations?.[Annotation.NYDUS_BOOTSTRAP] === 'true');
  if (annotated !== undefined) return annotated;
  throw new UsageError(`${what} is not a Nydus image (no layer is annotated ${Annotation.NYDUS_BOOTSTRAP})`);
}

/**
 * Extracts `image/image.boot` from a bootstrap layer stream (a gzip tar), checked against its
 * descriptor: its digest, and never more bytes than its size. Unpacked as it arrives, so that on
 * a slow link unpacking ends with the download.
 */
export async function extractBootstrap(stream: AsyncIterable<Buffer>, layer: Pick<Descriptor, 'digest' | 'size'>): Promise<Buffer> {
  const { digest } = layer;
  if (!Number.isSafeInteger(layer.size) || layer.size < 0) throw new FormatError(`bootstrap layer ${digest}: size ${layer.size} is out of range`);
  const hash = new StreamDigest(digest, `bootstrap layer ${digest}`);
  let received = 0;
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const c of stream) {
      received += c.length;
      if (received > layer.size) throw new IntegrityError(`bootstrap layer ${digest} is longer than its descriptor's ${layer.size} bytes`);
      hash.update(c);
      yield c;
    }
  }
  const parser = new TarParser();
  // The bootstrap is copied once, into a buffer of the size its tar header gives (the parser
  // yields exactly that many data bytes): copying pieces and joining them showed in start-up.
  let boot: Buffer | undefined;
  let inBoot = false;
  let filled = 0;
  for await (const chunk of gunzipStream(hashed(), `bootstrap layer ${digest}`)) {
    for (const ev of parser.write(chunk)) {
      if (ev.kind === 'entry') {
        const p = ev.entry.path.toString('latin1').replace(/^\.?\//, '');
        inBoot = ev.entry.type === 'file' && p === 'image/image.boot';
        if (inBoot) {
          if (ev.entry.size > MAX_BOOTSTRAP) throw new FormatError(`bootstrap layer ${digest}: image/image.boot of ${ev.entry.size} bytes is too large`);
          boot = Buffer.allocUnsafe(ev.entry.size);
          filled = 0;
        }
      } else if (ev.kind === 'data' && inBoot && boot !== undefined) {
        boot.set(ev.bytes, filled);
        filled += ev.bytes.length;
      } else if (ev.kind === 'hole' && inBoot && boot !== undefined) {
        boot.fill(0, filled, filled + ev.length); // a bootstrap stored as a sparse file
        filled += ev.length;
      } else if (ev.kind === 'entry-end') {
        inBoot = false;
      }
    }
  }
  parser.end();
  hash.check();
  if (received !== layer.size) throw new IntegrityError(`bootstrap layer ${digest} is ${received} bytes, not its descriptor's ${layer.size}`);
  if (boot === undefined) throw new FormatError(`bootstrap layer ${digest} holds no image/image.boot`);
  if (filled !== boot.length) throw new FormatError(`bootstrap layer ${digest}: image/image.boot is truncated`);
  return boot;
}

export async function fetchBootstrap(store: ImageStore): Promise<{ resolved: ResolvedManifest; layer: Descriptor; bootstrap: Buffer }> {
  const resolved = await store.resolve();
  const layer = bootstrapDescriptor(resolved.manifest, store.name);
  const bootstrap = await extractBootstrap(store.blobStream(layer.digest), layer);
  return { resolved, layer, bootstrap };
}
