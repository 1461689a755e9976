/**
 * Image references on the command line: `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]` (a registry)
 * or `oci:DIR[:TAG]` (an OCI image layout directory), as skopeo and nydusify write them.
 */
import { UsageError } from '../base/index.js';
import { checkReference, checkRepository } from './registry/names.js';

export type ImageRef =
  | { kind: 'registry'; host: string; repo: string; tag?: string; digest?: string }
  | { kind: 'oci-layout'; dir: string; tag?: string };

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function parseImageRef(ref: string): ImageRef {
  if (ref.startsWith('docker://')) {
    const rest = ref.slice('docker://'.length);
    const slash = rest.indexOf('/');
    if (slash <= 0) throw new UsageError(`${ref}: expected docker://HOST/REPO[:TAG]`);
    const host = rest.slice(0, slash);
    let path = rest.slice(slash + 1);
    let digest: string | undefined;
    let tag: string | undefined;
    const at = path.indexOf('@');
    if (at >= 0) {
      digest = path.slice(at + 1);
      path = path.slice(0, at);
      if (!DIGEST.test(digest)) throw new UsageError(`${ref}: invalid digest ${digest}`);
    }
    const colon = path.lastIndexOf(':');
    if (colon > 0 && !path.slice(colon).includes('/')) {
      tag = path.slice(colon + 1);
      path = path.slice(0, colon);
    }
    try {
      checkRepository(path);
      if (tag !== undefined) checkReference(tag);
    } catch (e) {
      throw new UsageError(`${ref}: ${(e as Error).message}`);
    }
    return { kind: 'registry', host, repo: path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}), ...(tag === undefined && digest === undefined ? { tag: 'latest' } : {}) };
  }
  if (ref.startsWith('oci:')) {
    const rest = ref.slice('oci:'.length);
    if (rest === '') throw new UsageError(`${ref}: expected oci:DIR[:TAG]`);
    const colon = rest.lastIndexOf(':');
    if (colon > 0 && !rest.slice(colon).includes('/')) return { kind: 'oci-layout', dir: rest.slice(0, colon), tag: rest.slice(colon + 1) };
    return { kind: 'oci-layout', dir: rest };
  }
  throw new UsageError(`${ref}: an image reference must start with docker:// or oci:`);
}

export function refToString(r: ImageRef): string {
  if (r.kind === 'oci-layout') return `oci:${r.dir}${r.tag ? `:${r.tag}` : ''}`;
  return `docker://${r.host}/${r.repo}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}
