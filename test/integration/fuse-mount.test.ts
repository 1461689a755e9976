/**
 * `damselfly mount` through the kernel's /dev/fuse: images Damselfly builds and the Nydus vectors
 * show exactly their trees; one small file fetches only its chunks; eight concurrent readers get
 * exact bytes; a recorded access pattern becomes a prefetch table that `--prefetch` fetches;
 * tampered cache and backend bytes never reach a reader; a killed daemon restarted on its cache
 * reads nothing from the backend.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, lstat, mkdir, mkdtemp, open, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { native } from '../../src/native/index.js';
import { VECTORS, damselfly, damselflyOk, sh, vectorsMissing } from '../helpers/env.js';
import { startMount } from '../helpers/mount.js';
import { type Entry, compareTrees, listTree, makeTree, prng } from '../helpers/tree.js';

interface Stats {
  [k: string]: number;
}

function stats(stdout: string): Stats {
  return JSON.parse(stdout) as Stats;
}

/** Reads every file under `dir`; returns a digest of all paths and contents (names as raw bytes). */
async function readAll(dir: string): Promise<string> {
  const h = createHash('sha256');
  const visit = async (d: Buffer): Promise<void> => {
    const names = ((await readdir(d, { encoding: 'buffer' })) as Buffer[]).sort(Buffer.compare);
    for (const name of names) {
      const p = Buffer.concat([d, Buffer.from('/'), name]);
      const st = await lstat(p);
      if (st.isDirectory()) await visit(p);
      else if (st.isFile()) {
        h.update(p.subarray(dir.length));
        const fh = await open(p, 'r');
        for await (const chunk of fh.createReadStream()) h.update(chunk as Buffer);
      }
    }
  };
  await visit(Buffer.from(dir));
  return h.digest('hex');
}

describe('FUSE host mount', () => {
  let work: string;
  let src: string;
  let srcListing: Map<string, Entry>;
  let image: string[];
  let big: string[];
  const bigFile = prng(99, 256 << 20);

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-fuse-'));
    src = join(work, 'src');
    await makeTree(src, { bigDirEntries: 2000, hugeSparse: true });
    srcListing = await listTree(src);
    await damselflyOk(['build', '--bootstrap', join(work, 'image.boot'), '--blob-dir', join(work, 'blobs'), src]);
    image = ['--bootstrap', join(work, 'image.boot'), '--blob-dir', join(work, 'blobs')];
    // A large image: 40 random files of 4 MiB, a 256 MiB file, and one small file.
    const bigSrc = join(work, 'big-src');
    await mkdir(bigSrc);
    for (let i = 0; i < 40; i++) await writeFile(join(bigSrc, `file-${i}`), prng(1000 + i, 4 << 20));
    await writeFile(join(bigSrc, 'large'), bigFile);
    await writeFile(join(bigSrc, 'small.txt'), 'a small file in a large image\n');
    await damselflyOk(['build', '--bootstrap', join(work, 'big.boot'), '--blob-dir', join(work, 'big-blobs'), bigSrc]);
    big = ['--bootstrap', join(work, 'big.boot'), '--blob-dir', join(work, 'big-blobs')];
    await mkdir(join(work, 'mnt'));
  });
  after(async () => {
    sh(`umount -l ${work}/mnt 2>/dev/null || true`);
    await rm(work, { recursive: true, force: true });
  });

  test('a Damselfly image shows exactly its source tree', async () => {
    const mnt = join(work, 'mnt');
    const m = await startMount([...image, '--cache-dir', join(work, 'cache')], mnt);
    try {
      assert.deepEqual(await compareTrees(src, mnt, { leftListing: srcListing }), []);
      // find(1) lists the same paths; getfattr dumps the same xattrs; readlink agrees; diff -r
      // finds no difference in regular files; hardlinks share an inode number; a script runs.
      const find = (d: string): string => execFileSync('find', ['.', '-printf', '%p %y %m %U %G %n\\n'], { cwd: d, encoding: 'latin1', maxBuffer: 64 << 20 }).split('\n').sort().join('\n');
      assert.equal(find(mnt), find(src));
      // getfattr walks in readdir order, which differs between filesystems: compare sorted blocks.
      const xattrs = (d: string): string =>
        sh(`cd ${d} && getfattr -R -h -d -m - -e hex . 2>/dev/null | grep -v selinux || true`)
          .split('\n\n')
          .map((b) => b.trim())
          .filter(Boolean)
          .sort()
          .join('\n');
      assert.equal(xattrs(mnt), xattrs(src));
      assert.equal(await readlink(join(mnt, 'dir', 'rel-link')), '../small.txt');
      sh(`diff -r --no-dereference -x 'null-dev' -x 'block-dev' -x 'big-dev' -x fifo -x socket ${src} ${mnt}`);
      const ino = (p: string): string => sh(`stat -c %i ${p}`).trim();
      assert.equal(ino(join(mnt, 'hard-a')), ino(join(mnt, 'dir', 'sub', 'hard-c')));
      assert.equal(sh(`${mnt}/setuid`).trim(), 'setuid');
      // Holes: a sparse file's holes are chunks of zeros in the image, and read as holes again
      // (SEEK_DATA / SEEK_HOLE, at the chunk size: 1 MiB), so cp and tar keep them sparse.
      const MiB = 1 << 20;
      const seeks = async (path: string, offsets: number[]): Promise<Array<[number, number]>> => {
        const fh = await open(path, 'r');
        try {
          return offsets.map((o) => [native.seekData(fh.fd, o, 3), native.seekData(fh.fd, o, 4)]);
        } finally {
          await fh.close();
        }
      };
      const NO_DATA = -1; // ENXIO: no data at or after the offset
      assert.deepEqual(await seeks(join(mnt, 'sparse'), [0, 3 * MiB + 100, 4 * MiB]), [[3 * MiB, 0], [3 * MiB + 100, 4 * MiB], [NO_DATA, 4 * MiB]]);
      assert.deepEqual(await seeks(join(mnt, 'huge-sparse'), [0, 4 * 1024 * MiB]), [[4 * 1024 * MiB, 0], [4 * 1024 * MiB, 4 * 1024 * MiB + MiB]]);
    } finally {
      const r = await m.stop();
      assert.equal(r.code, 0, r.stderr);
    }
  });

  test('the Nydus vectors mount and match their expected trees', { skip: vectorsMissing() }, async () => {
    const vectors = [
      { name: 'v5-sha256-uncompressed', args: ['--bootstrap', join(VECTORS, 'v5-sha256-uncompressed', 'image.boot'), '--blob-dir', join(VECTORS, 'v5-sha256-uncompressed', 'blobs')] },
      { name: 'v6-blake3-zstd', args: ['--bootstrap', join(VECTORS, 'v6-blake3-zstd', 'image.boot'), '--blob-dir', join(VECTORS, 'v6-blake3-zstd', 'blobs')] },
      { name: 'v6-inlined-bootstrap', args: ['--blob', join(VECTORS, 'v6-inlined-bootstrap', '2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca')] },
    ];
    for (const v of vectors) {
      const mnt = join(work, 'mnt');
      const m = await startMount(v.args, mnt);
      try {
        const expected = (await readFile(join(VECTORS, v.name, 'expected.tsv'), 'utf8')).split('\n').filter(Boolean);
        for (const line of expected) {
          const [path, kind, perm, size, hash] = line.split('\t') as [string, string, string, string, string];
          const p = join(mnt, path);
          const st = sh(`stat -c '%F %a %s' '${p}'`).trim();
          const type = { dir: 'directory', file: 'regular file', symlink: 'symbolic link' }[kind] ?? kind;
          assert.match(st, new RegExp(`^${type}( empty file)? ${perm} `), `${v.name}${path}: ${st}`);
          if (kind !== 'dir') assert.equal(st.split(' ').pop(), size, `${v.name}${path} size`);
          if (kind === 'file') assert.equal(createHash('sha256').update(await readFile(p)).digest('hex'), hash, `${v.name}${path}`);
          if (kind === 'symlink') assert.equal(await readlink(p), hash);
        }
      } finally {
        await m.stop();
      }
    }
  });

  test('an absent name is ENOENT to programs and asked of the daemon once (a cached negative entry)', async () => {
    const mnt = join(work, 'mnt');
    const m = await startMount([...image, '--stats'], mnt);
    for (let i = 0; i < 3; i++) await assert.rejects(lstat(join(mnt, 'missing')), { code: 'ENOENT' });
    for (let i = 0; i < 2; i++) await assert.rejects(lstat(join(mnt, 'dir', 'nope')), { code: 'ENOENT' });
    await assert.rejects(readFile(join(mnt, 'dir', 'nope')), { code: 'ENOENT' });
    const s = stats((await m.stop()).stdout);
    // 'missing', 'dir' and 'dir/nope', once each; no errors.
    assert.equal(s['fuse.requests.LOOKUP'], 3, JSON.stringify(s));
    assert.equal(s['fuse.errors'] ?? 0, 0);
  });

  test('an image without xattrs answers GETXATTR with ENOSYS once (as nydusd): ls -l asks no more; enable_xattr serves them', async () => {
    const mnt = join(work, 'mnt');
    const lsl = (): string => execFileSync('ls', ['-l', mnt], { encoding: 'utf8' });
    let m = await startMount([...big, '--stats'], mnt);
    const listing = lsl();
    assert.match(listing, /small\.txt/);
    await assert.rejects(readFile(join(mnt, 'nope')), { code: 'ENOENT' });
    let s = stats((await m.stop()).stdout);
    assert.equal(s['fuse.requests.GETXATTR'], 1, `42 files listed, the kernel asked once: ${JSON.stringify(s)}`);
    // The config's enable_xattr (nydus): served, absent ones ENODATA, `ls -l` unchanged.
    const cfg = join(work, 'xattr.json');
    await writeFile(cfg, JSON.stringify({ device: { backend: { type: 'localfs', config: { dir: join(work, 'big-blobs') } } }, mode: 'direct', enable_xattr: true }));
    m = await startMount(['--bootstrap', join(work, 'big.boot'), '--config', cfg, '--stats'], mnt);
    assert.equal(lsl(), listing);
    s = stats((await m.stop()).stdout);
    assert.ok((s['fuse.requests.GETXATTR'] ?? 0) >= 42, JSON.stringify(s));
  });

  test('reading one small file of a large image fetches only its chunk', async () => {
    const info = JSON.parse((await damselflyOk(['inspect', '--bootstrap', join(work, 'big.boot'), '--path', '/small.txt', '--json'])).stdout) as { chunks: Array<{ compressedSize: number }> };
    assert.equal(info.chunks.length, 1);
    const mnt = join(work, 'mnt');
    const m = await startMount([...big, '--stats'], mnt);
    assert.equal(await readFile(join(mnt, 'small.txt'), 'utf8'), 'a small file in a large image\n');
    const s = stats((await m.stop()).stdout);
    assert.equal(s['storage.chunks_fetched'], 1);
    assert.equal(s['storage.backend_requests'], 1);
    assert.equal(s['storage.backend_bytes'], info.chunks[0]?.compressedSize);
  });

  test("the mount's read-ahead is the 1 MiB the daemon asks for at INIT: a sequential read comes as READs of up to 1 MiB", async () => {
    const mnt = join(work, 'mnt');
    const m = await startMount([...big, '--stats'], mnt);
    let bdi: string;
    try {
      bdi = sh(`mountpoint -d ${mnt}`).trim();
      assert.equal(sh(`cat /sys/class/bdi/${bdi}/read_ahead_kb`).trim(), '1024');
      // As cat(1) reads: 128 KiB at a time. The kernel's own 128 KiB read-ahead sends 16-32 READs.
      sh(`dd if=${mnt}/file-0 of=/dev/null bs=128K status=none`);
    } catch (e) {
      await m.stop();
      throw e;
    }
    const s = stats((await m.stop()).stdout);
    assert.ok((s['fuse.requests.READ'] ?? 0) <= 8, `${s['fuse.requests.READ']} READs for 4 MiB`);
    assert.equal(s['fs.read_bytes'], 4 << 20);
  });

  test('an image whose small files are stored in batches shows exactly its tree; one small file fetches its batch, once', async () => {
    const boot = join(work, 'batch.boot');
    const blobs = join(work, 'batch-blobs');
    await damselflyOk(['build', '--batch-size', '64K', '--bootstrap', boot, '--blob-dir', blobs, src]);
    const batched = ['--bootstrap', boot, '--blob-dir', blobs];
    const mnt = join(work, 'mnt');
    let m = await startMount([...batched, '--cache-dir', join(work, 'batch-cache')], mnt);
    try {
      assert.deepEqual(await compareTrees(src, mnt, { leftListing: srcListing }), []);
    } finally {
      const r = await m.stop();
      assert.equal(r.code, 0, r.stderr);
    }
    // Without --blob-dir inspect cannot say where a batch member is; with it, it shows the batch.
    const r = await damselfly(['inspect', '--bootstrap', boot, '--path', '/small.txt', '--json']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\(batches or ZRan\): give --blob-dir/);
    const info = JSON.parse((await damselflyOk(['inspect', ...batched, '--path', '/small.txt', '--json'])).stdout) as { chunks: Array<{ compressedSize: number; batch?: { offset: number; size: number } }> };
    const c = info.chunks[0];
    assert.ok(c?.batch !== undefined && c.batch.size > c.compressedSize / 2);
    m = await startMount([...batched, '--stats'], mnt);
    assert.equal(await readFile(join(mnt, 'small.txt'), 'utf8'), await readFile(join(src, 'small.txt'), 'utf8'));
    const s = stats((await m.stop()).stdout);
    assert.equal(s['storage.backend_requests'], 1);
    assert.equal(s['storage.backend_bytes'], c.compressedSize);
    assert.ok((s['storage.chunks_fetched'] ?? 0) > 1, 'the other members of the batch came with it');
  });

  test('--record-pattern writes the files read as a prefetch list; an image built with it and served with --prefetch fetches them unasked', async () => {
    const mnt = join(work, 'mnt');
    const pattern = join(work, 'pattern.txt');
    let m = await startMount([...big, '--record-pattern', pattern], mnt);
    assert.equal(await readFile(join(mnt, 'small.txt'), 'utf8'), 'a small file in a large image\n');
    const fh = await open(join(mnt, 'file-3'), 'r');
    await fh.read(Buffer.alloc(4096), 0, 4096, 0);
    await fh.close();
    assert.equal((await m.stop()).code, 0);
    assert.deepEqual((await readFile(pattern, 'utf8')).split('\n').filter((l) => l.startsWith('/file') || l.startsWith('/small')), ['/small.txt', '/file-3'], 'first accessed first');
    // A pattern file that cannot be written is refused before mounting, not found out at exit.
    const bad = await damselfly(['mount', ...big, '--record-pattern', join(work, 'no-such-dir', 'p.txt'), mnt]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /no-such-dir\/p\.txt: ENOENT/);

    await damselflyOk(['build', '--prefetch-files', pattern, '--bootstrap', join(work, 'big-pf.boot'), '--blob-dir', join(work, 'big-pf-blobs'), join(work, 'big-src')]);
    const chunks = async (path: string): Promise<number> =>
      (JSON.parse((await damselflyOk(['inspect', '--bootstrap', join(work, 'big-pf.boot'), '--path', path, '--json'])).stdout) as { chunks: unknown[] }).chunks.length;
    const wanted = (await chunks('/small.txt')) + (await chunks('/file-3'));
    m = await startMount(['--bootstrap', join(work, 'big-pf.boot'), '--blob-dir', join(work, 'big-pf-blobs'), '--prefetch', '--stats', '--log-level', 'info'], mnt);
    const t0 = Date.now();
    while (!m.stderr().includes('"msg":"prefetch finished"')) {
      assert.ok(Date.now() - t0 < 30_000, `prefetch did not finish:\n${m.stderr()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const s = stats((await m.stop()).stdout);
    assert.equal(s['prefetch.planned_chunks'], wanted);
    assert.equal(s['storage.chunks_fetched'], wanted, 'the prefetch table, nothing else');
    assert.equal(s['fuse.requests.READ'] ?? 0, 0, 'and nothing was read');
  });

  test('eight concurrent readers at random offsets (1 GiB in all) get exactly the right bytes', async () => {
    const mnt = join(work, 'mnt');
    const m = await startMount([...big, '--cache-dir', join(work, 'big-cache')], mnt);
    try {
      const total = 1 << 30;
      const reader = async (seed: number): Promise<number> => {
        const fh = await open(join(mnt, 'large'), 'r');
        const rnd = prng(seed, 1 << 16);
        let done = 0;
        let k = 0;
        try {
          while (done < total / 8) {
            const a = rnd.readUInt32LE((k * 8) % (rnd.length - 8));
            const b = rnd.readUInt32LE((k * 8 + 4) % (rnd.length - 8));
            k++;
            const size = 1 + (b % (1 << 20));
            const off = a % (bigFile.length - size);
            const buf = Buffer.alloc(size);
            const { bytesRead } = await fh.read(buf, 0, size, off);
            assert.equal(bytesRead, size);
            if (buf.compare(bigFile, off, off + size) !== 0) throw new Error(`wrong bytes at ${off}+${size}`);
            done += size;
          }
        } finally {
          await fh.close();
        }
        return done;
      };
      const done = await Promise.all(Array.from({ length: 8 }, (_, i) => reader(7 + i)));
      assert.ok(done.reduce((x, y) => x + y, 0) >= total);
    } finally {
      await m.stop();
    }
  });

  test('bytes changed in the cache file are caught with --validate and the right data returned', async () => {
    const cache = join(work, 'tamper-cache');
    const mnt = join(work, 'mnt');
    let m = await startMount([...big, '--cache-dir', cache], mnt);
    const want = await readFile(join(mnt, 'file-3'));
    await m.stop();
    // Flip bytes everywhere in the cache file (every cached chunk is now wrong).
    const [data] = (await readdir(cache)).filter((f) => f.endsWith('.blob.data'));
    const fh = await open(join(cache, data as string), 'r+');
    const { size } = await fh.stat();
    for (let off = 100; off < size; off += 65536) await fh.write(Buffer.from([0xde, 0xad]), 0, 2, off);
    await fh.close();
    m = await startMount([...big, '--cache-dir', cache, '--validate', '--stats'], mnt);
    const got = await readFile(join(mnt, 'file-3'));
    const s = stats((await m.stop()).stdout);
    assert.ok(got.equals(want), 'the reader got the right bytes');
    assert.ok((s['storage.cache_verify_failures'] ?? 0) >= 4, JSON.stringify(s));
    assert.ok((s['storage.chunks_fetched'] ?? 0) >= 4, 'refetched from the backend');
  });

  test('bytes changed in a backend blob give EIO, never wrong data', async () => {
    const blobs = join(work, 'bad-blobs');
    await mkdir(blobs);
    for (const f of await readdir(join(work, 'big-blobs'))) await copyFile(join(work, 'big-blobs', f), join(blobs, f));
    const info = JSON.parse((await damselflyOk(['inspect', '--bootstrap', join(work, 'big.boot'), '--path', '/file-5', '--json'])).stdout) as { chunks: Array<{ blob: string; compressedOffset: number; compressedSize: number }> };
    const c = info.chunks[1] as { blob: string; compressedOffset: number; compressedSize: number };
    const fh = await open(join(blobs, c.blob), 'r+');
    const b = Buffer.alloc(1);
    const at = c.compressedOffset + Math.floor(c.compressedSize / 2);
    await fh.read(b, 0, 1, at);
    b[0] = (b[0] as number) ^ 0x40;
    await fh.write(b, 0, 1, at);
    await fh.close();
    const mnt = join(work, 'mnt');
    const m = await startMount(['--bootstrap', join(work, 'big.boot'), '--blob-dir', blobs, '--stats'], mnt);
    // Read again and again (a guest in a loop): EIO each time, one error line of each kind.
    for (let i = 0; i < 5; i++) await assert.rejects(readFile(join(mnt, 'file-5')), (e: NodeJS.ErrnoException) => e.code === 'EIO');
    // The first chunk of the same file and other files still read correctly.
    const head = Buffer.alloc(4096);
    const f = await open(join(mnt, 'file-5'), 'r');
    await f.read(head, 0, 4096, 0);
    await f.close();
    assert.ok(head.equals(prng(1005, 4096)));
    assert.ok((await readFile(join(mnt, 'file-6'))).equals(prng(1006, 4 << 20)));
    const r = await m.stop();
    const s = stats(r.stdout);
    assert.ok((s['storage.verify_failures'] ?? 0) >= 5, JSON.stringify(s));
    const lines = (msg: string): number => r.stderr.split('\n').filter((l) => l.includes(`"msg":"${msg}"`)).length;
    assert.equal(lines('chunk from the backend failed verification'), 1, r.stderr);
    assert.equal(lines('request failed'), 1, r.stderr);
  });

  test('a blob missing from the blob directory is named in a warning at mount; reads of its files fail with EIO', async () => {
    const empty = join(work, 'no-blobs');
    await mkdir(empty, { recursive: true });
    const [blob] = await readdir(join(work, 'big-blobs'));
    assert.ok(blob);
    const mnt = join(work, 'mnt');
    const m = await startMount(['--bootstrap', join(work, 'big.boot'), '--blob-dir', empty, '--stats'], mnt);
    for (let i = 0; i < 100 && !m.stderr().includes('a blob of the image cannot be read'); i++) await new Promise((r) => setTimeout(r, 50));
    const warning = m.stderr().split('\n').find((l) => l.includes('a blob of the image cannot be read'));
    assert.ok(warning?.includes(blob) && warning.includes(empty), m.stderr());
    assert.deepEqual(await readdir(mnt).then((n) => n.includes('small.txt')), true, 'the tree is served from the bootstrap');
    await assert.rejects(readFile(join(mnt, 'small.txt')), (e: NodeJS.ErrnoException) => e.code === 'EIO');
    const r = await m.stop();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(stats(r.stdout)['storage.chunks_fetched'] ?? 0, 0);
  });

  test('SIGHUP (the terminal of a foreground mount closing) unmounts cleanly and exits 0', async () => {
    const mnt = join(work, 'mnt');
    const m = await startMount([...image, '--cache-dir', join(work, 'hup-cache')], mnt);
    assert.ok((await readFile(join(mnt, 'small.txt'))).length > 0);
    const exited = new Promise<number | null>((resolve) => m.proc.once('exit', (code) => resolve(code)));
    m.proc.kill('SIGHUP');
    assert.equal(await exited, 0, m.stderr());
    assert.ok(!(await readFile('/proc/self/mountinfo', 'utf8')).includes(` ${mnt} `), 'no mount left behind');
  });

  test('a cache directory that cannot be written is refused at start; one that turns read-only later is done without', async () => {
    const mnt = join(work, 'mnt');
    const ro = join(work, 'ro-cache');
    await mkdir(ro);
    sh(`mount --bind ${ro} ${ro} && mount -o remount,bind,ro ${ro}`);
    try {
      // Refused before mounting: it exits at once (a mount would run until stopped).
      const r = await damselfly(['mount', ...big, '--cache-dir', ro, mnt], { timeoutMs: 30_000 });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`damselfly: cache directory ${ro} is not usable: EROFS`));
    } finally {
      sh(`umount ${ro}`);
    }
    await writeFile(join(work, 'not-a-dir'), 'a file');
    const f = await damselfly(['mount', ...big, '--cache-dir', join(work, 'not-a-dir'), mnt], { timeoutMs: 30_000 });
    assert.equal(f.code, 2, f.stderr);
    assert.match(f.stderr, /cache directory .*not-a-dir is not usable: EEXIST/);
    // Usable at start, read-only before the first read opens the blob's cache: served from memory.
    const live = join(work, 'live-cache');
    await mkdir(live);
    sh(`mount --bind ${live} ${live}`);
    try {
      const m = await startMount([...big, '--cache-dir', live, '--stats'], mnt);
      sh(`mount -o remount,bind,ro ${live}`);
      for (let i = 0; i < 4; i++) assert.ok((await readFile(join(mnt, `file-${i}`))).equals(prng(1000 + i, 4 << 20)), `file-${i}`);
      const r = await m.stop();
      assert.equal(r.code, 0, r.stderr);
      assert.equal(stats(r.stdout)['storage.cache_open_failures'], 1, r.stdout);
      assert.equal(r.stderr.split('\n').filter((l) => l.includes('serving it from memory')).length, 1, r.stderr);
    } finally {
      sh(`umount ${live}`);
    }
  });

  test('a cache directory that runs out of space: every file still reads right, and one warning says so', async () => {
    const cache = join(work, 'full-cache');
    await mkdir(cache);
    sh(`mount -t tmpfs -o size=1m damselfly-test ${cache}`);
    const mnt = join(work, 'mnt');
    try {
      const m = await startMount([...big, '--cache-dir', cache, '--stats'], mnt);
      for (let i = 0; i < 12; i++) assert.ok((await readFile(join(mnt, `file-${i}`))).equals(prng(1000 + i, 4 << 20)), `file-${i}`);
      const r = await m.stop();
      assert.equal(r.code, 0, r.stderr);
      const s = stats(r.stdout);
      // 48 chunks of 1 MiB into 1 MiB of space: all but the first few stores fail.
      assert.ok((s['storage.cache_store_failures'] ?? 0) >= 40, JSON.stringify(s));
      const warnings = r.stderr.split('\n').filter((l) => l.includes('"msg":"storing a chunk in the cache failed"'));
      assert.equal(warnings.length, 1, r.stderr);
      assert.match(warnings[0] as string, /ENOSPC|no space/i);
    } finally {
      sh(`umount -l ${cache}`);
    }
  });

  test('a killed daemon restarted on the same cache reads nothing from the backend', async () => {
    const cache = join(work, 'restart-cache');
    const mnt = join(work, 'mnt');
    let m = await startMount([...image, '--cache-dir', cache], mnt);
    const bytes = await readAll(mnt);
    // Chunks are written to the cache right after they are served; let the last writes land.
    await new Promise((r) => setTimeout(r, 1000));
    await m.kill();
    sh(`umount -l ${mnt}`);
    m = await startMount([...image, '--cache-dir', cache, '--stats'], mnt);
    assert.equal(await readAll(mnt), bytes);
    assert.deepEqual(await compareTrees(src, mnt, { leftListing: srcListing }), []);
    const s = stats((await m.stop()).stdout);
    assert.equal(s['storage.backend_requests'] ?? 0, 0, JSON.stringify(s));
    assert.ok((s['storage.cache_hits'] ?? 0) > 0);
  });

  test('a missing or wrong mountpoint gets a clear message', async () => {
    const missing = await damselfly(['mount', ...image, join(work, 'no-such-dir')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /mountpoint .*no-such-dir does not exist/);
    const notDir = await damselfly(['mount', ...image, join(work, 'image.boot')]);
    assert.equal(notDir.code, 2);
    assert.match(notDir.stderr, /is not a directory/);
  });
});
