/**
 * Seeded random stacks of OCI layers through the builder, against the reference model of layer
 * application (test/helpers/layers.ts). Each layer is drawn from the tree the layers below it make:
 * new files, directories, symlinks, devices and FIFOs, hardlinks within the layer, files and
 * directories replaced by the other type, attributes changed by listing an entry again, whiteouts
 * of lower names (and the name added again in the same layer), opaque directories, a new root
 * entry; modes, owners, xattrs and times before and after 1970 drawn too, and each layer written
 * plain, gzipped or zstd-compressed.
 *
 * Invariant: the image, unpacked, is exactly the model's tree (`compareTrees`: type, mode, owner,
 * size, nlink, device numbers, mtime, symlink targets, xattrs, content, hardlink groups), and
 * exactly what umoci (an independent implementation of layer application, in Go) unpacks from
 * the same layers, but for the xattrs umoci does not apply (`umociXattrsOnly`).
 */
import assert from 'node:assert/strict';
import { closeSync, constants, openSync, readdirSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TarEntry } from '../../src/format/tar.js';
import { native } from '../../src/native/index.js';
import { damselflyOk, sh, withTempDir } from '../helpers/env.js';
import { type Compression, type Item, type MNode, item, materialize, referenceMerge, writeLayer } from '../helpers/layers.js';
import { ociImageOfLayers } from '../helpers/oci-image.js';
import { type Rng, caseRng } from '../helpers/rng.js';
import { compareTrees, prng } from '../helpers/tree.js';

const STACKS = 30;

/** Every path of the merged tree below the root, with its kind ('a/b' → 'dir'). */
function pathsOf(root: MNode): Map<string, MNode['kind']> {
  const out = new Map<string, MNode['kind']>();
  const walk = (n: MNode, at: string): void => {
    for (const [name, c] of n.children ?? []) {
      const p = at === '' ? name : `${at}/${name}`;
      out.set(p, c.kind);
      if (c.kind === 'dir') walk(c, p);
    }
  };
  walk(root, '');
  return out;
}

/**
 * Removes from the tree at `dir` the xattrs umoci 0.4.7 does not apply: trusted.overlay.* (which
 * it forbids, as overlayfs's own: "ignoring forbidden xattr") and those with an empty value (Go's
 * archive/tar drops a PAX record with an empty value, as POSIX pax says such a record deletes its
 * keyword; GNU tar keeps the xattr, as Damselfly does). Only files and directories carry xattrs
 * in these layers.
 */
function umociXattrsOnly(dir: string): void {
  const below = readdirSync(dir, { withFileTypes: true, recursive: true }).filter((e) => e.isFile() || e.isDirectory());
  for (const path of [dir, ...below.map((e) => join(e.parentPath, e.name))]) {
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      for (const name of native.llistxattr(path).map(String)) {
        if (name.startsWith('trusted.overlay.') || native.lgetxattr(path, name)?.length === 0) native.ptRemovexattr(fd, name);
      }
    } finally {
      closeSync(fd);
    }
  }
}

const parentOf = (p: string): string => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const under = (p: string, dir: string): boolean => dir === '' || p.startsWith(`${dir}/`);

function attrs(rng: Rng, kind: TarEntry['type']): Partial<TarEntry> & { time: number } {
  const a: Partial<TarEntry> & { time: number } = {
    time: rng.pick([1_600_000_000, 1_700_000_000 + rng.int(1000), 0, -86_400 * 365 * 20, 2 ** 32 + 3]),
    mtimeNsec: rng.next() < 0.5 ? 0 : rng.int(1_000_000_000),
    uid: rng.pick([0, 0, 1000, 65534, 3_000_000]),
    gid: rng.pick([0, 0, 100, 4_000_000]),
  };
  if (kind !== 'symlink' && kind !== 'hardlink') a.mode = rng.pick([0o755, 0o644, 0o600, 0o4755, 0o2711, 0o1777, 0o000, rng.int(0o10000)]);
  if ((kind === 'file' || kind === 'dir') && rng.next() < 0.3) {
    a.xattrs = [[Buffer.from(rng.pick(['user.a', 'user.b', 'trusted.overlay.origin', 'security.test'])), prng(rng.int(1 << 30), rng.int(40))]];
  }
  return a;
}

/** One layer drawn from the tree below it (`lower`: the merged layers so far). */
function randomLayer(rng: Rng, lower: MNode, index: number): Item[] {
  const below = pathsOf(lower);
  const items: Item[] = [];
  /** Paths this layer lists (each once), with the kind it gives them. */
  const listed = new Map<string, TarEntry['type']>();
  /** Lower directories whose lower content this layer hides (whiteouts, opaque markers, replacements). */
  const hidden: string[] = [];
  const visibleBelow = (p: string): boolean => below.has(p) && !hidden.some((h) => p === h || under(p, h));
  const isDir = (p: string): boolean => p === '' || listed.get(p) === 'dir' || (!listed.has(p) && visibleBelow(p) && below.get(p) === 'dir');
  const dirs = (): string[] => ['', ...[...new Set([...below.keys(), ...listed.keys()])].filter((p) => isDir(p))];
  /** Whiteouts written in this layer, by the path they hide. */
  const whiteouts: string[] = [];
  // Whether this layer puts anything below `p`. A whiteout below a directory that this layer then
  // makes opaque (or replaces) is left out: the whiteout implies its parent directory in the layer,
  // which overlayfs-style application (the overlay snapshotter's unpacked layers) keeps, and so
  // does Damselfly's builder, where containerd's plain applier and this model remove it.
  const hasListedUnder = (p: string): boolean => [...listed.keys(), ...whiteouts].some((q) => under(q, p));
  const files: string[] = [];
  let fresh = 0;
  const newName = (dir: string): string => `${dir === '' ? '' : `${dir}/`}n${index}-${fresh++}`;
  const add = (path: string, type: TarEntry['type'], extra: Partial<TarEntry> & { data?: Buffer } = {}): void => {
    listed.set(path, type);
    const a = attrs(rng, type);
    items.push(item(type === 'dir' ? `${path}/` : path, type, { ...a, ...extra }));
    if (type === 'file') files.push(path);
  };

  if (rng.next() < 0.3) items.push(item('./', 'dir', attrs(rng, 'dir')));
  for (let n = 5 + rng.int(30); n > 0; n--) {
    const op = rng.int(10);
    const dir = rng.pick(dirs());
    // Lower names in `dir` not listed yet (candidates to replace, change or white out).
    const lowerHere = [...below.keys()].filter((p) => parentOf(p) === dir && visibleBelow(p) && !listed.has(p));
    if (op <= 2) {
      // A file: new, or over a lower name (a lower directory with nothing listed under it).
      const target = lowerHere.length > 0 && rng.next() < 0.3 ? rng.pick(lowerHere) : newName(dir);
      if (below.get(target) === 'dir') {
        if (hasListedUnder(target)) continue;
        hidden.push(target);
      }
      const size = rng.pick([0, 1, 100, 65_535, 65_536, 65_537, 200_000]);
      add(target, 'file', { data: prng(rng.int(1 << 30), size) });
    } else if (op === 3) {
      // A directory: new, over a lower file, or a lower directory listed again (new attributes).
      const target = lowerHere.length > 0 && rng.next() < 0.4 ? rng.pick(lowerHere) : newName(dir);
      add(target, 'dir');
    } else if (op === 4) {
      const target = newName(dir);
      const kind = rng.pick(['symlink', 'char', 'fifo'] as const);
      if (kind === 'symlink') add(target, 'symlink', { linkpath: Buffer.from(rng.pick(['../x', '/etc/passwd', 'n0-0', 'a'.repeat(1 + rng.int(300))])) });
      else if (kind === 'char') add(target, 'char', { devmajor: rng.int(300), devminor: rng.int(70_000) });
      else add(target, 'fifo');
    } else if (op === 5 && files.length > 0) {
      // A hardlink to a file of this layer.
      const path = newName(dir);
      listed.set(path, 'hardlink');
      items.push(item(path, 'hardlink', { linkpath: Buffer.from(rng.pick(files)) }));
    } else if (op <= 7 && lowerHere.length > 0) {
      // A whiteout of a lower name; sometimes the name comes back in this layer.
      const target = rng.pick(lowerHere);
      if (below.get(target) === 'dir' && hasListedUnder(target)) continue;
      items.push(item(`${dir === '' ? '' : `${dir}/`}.wh.${target.slice(dir === '' ? 0 : dir.length + 1)}`, 'file', { time: 0 }));
      hidden.push(target);
      whiteouts.push(target);
      if (rng.next() < 0.3) {
        if (rng.next() < 0.5) add(target, 'dir');
        else add(target, 'file', { data: Buffer.from('back\n') });
      }
    } else if (op === 8 && dir !== '' && visibleBelow(dir) && below.get(dir) === 'dir' && !hasListedUnder(dir) && !listed.has(dir)) {
      // An opaque directory: listed, with the marker; its lower content is gone.
      add(dir, 'dir');
      items.push(item(`${dir}/.wh..wh..opq`, 'file', { time: 0 }));
      hidden.push(...[...below.keys()].filter((p) => under(p, dir)));
    }
  }
  return items;
}

test(`random OCI layer stacks (${STACKS}): the image holds what layer application gives`, async (t) => {
  await withTempDir('damselfly-fuzz-stacks-', async (dir) => {
    const summary: string[] = [];
    for (let s = 0; s < STACKS; s++) {
      const rng = caseRng('layer-stacks', s);
      const out = join(dir, `stack-${s}`);
      await mkdir(out);
      const layers: Item[][] = [];
      const files: string[] = [];
      for (let l = 0, count = 1 + rng.int(4); l < count; l++) {
        const lowerModel = referenceMerge(layers);
        const items = randomLayer(rng, lowerModel, l);
        layers.push(items);
        files.push(await writeLayer(out, `layer${l}`, items, rng.pick<Compression>(['tar', 'tar.gz', 'tar.zst'])));
      }
      const expected = join(out, 'expected');
      await mkdir(expected);
      await materialize(referenceMerge(layers), expected);
      const image = ['--bootstrap', join(out, 'boot'), '--blob-dir', join(out, 'blobs')];
      await damselflyOk(['build', '--chunk-size', rng.pick(['64K', '1M']), ...image, ...files]);
      await damselflyOk(['unpack', ...image, '--output', join(out, 'unpacked')]);
      const what = `stack ${s}: ${layers.map((l) => l.map((i) => `${i.entry.type} ${i.entry.path.toString()}`).join(', ')).join(' | ')}`;
      assert.deepEqual(await compareTrees(expected, join(out, 'unpacked')), [], what.slice(0, 4000));
      // And exactly what umoci, an independent implementation, unpacks from the same layers.
      // (The zstd layers as the plain tars writeLayer also keeps: the helper writes tar and gzip.)
      await ociImageOfLayers(join(out, 'layout'), 'latest', files.map((f) => f.replace(/\.tar\.zst$/, '.tar')));
      sh(`umoci raw unpack --image '${join(out, 'layout')}:latest' '${join(out, 'umoci')}'`);
      umociXattrsOnly(join(out, 'unpacked'));
      assert.deepEqual(await compareTrees(join(out, 'umoci'), join(out, 'unpacked')), [], `against umoci: ${what.slice(0, 4000)}`);
      summary.push(`${layers.map((l) => l.length).join('+')} entries`);
      await rm(out, { recursive: true, force: true });
    }
    t.diagnostic(summary.join('; '));
    assert.equal(summary.length, STACKS);
  });
});
