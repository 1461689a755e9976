/**
 * Shared fixtures of the network-*.test.ts files (lazy loading from registries, S3 and a caching
 * proxy), and the tests of the fixtures themselves (a test is only as good as its expected tree).
 *
 * - `makeLayeredImage`: three layer directories (a whiteout, an opaque directory, replaced and
 *   added files, a symlink, hardlinks, an xattr, another owner, nanosecond mtimes), the OCI
 *   image made of them (gzip tar layers, `makeOciImage`) and the expected merged tree, built
 *   independently by applying the layers with cp(1) and rm(1).
 * - `convertTo`: `damselfly convert` of an OCI layout into a registry (plain http).
 * - `registryConfig` / `s3Config` / `writeConfig`: nydusd config v2 files.
 * - `startNginx`: Debian's nginx as a caching reverse proxy in front of a registry (a stand-in for
 *   a Dragonfly peer), with `/ping` for `ping_url`, killable as a crash and restartable.
 * - `readEveryFile`, `readOutcome`, `statsOf`, `detach`: reading mounts and daemon counters.
 *
 * The file lives under the network-*.test.ts name because that is where these tests may add
 * files; it has tests of its own and is imported by its siblings.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmod, chown, link, lstat, mkdir, open, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { native } from '../../src/native/index.js';
import { damselflyOk, sh, waitFor, withTempDir, requireTool } from '../helpers/env.js';
import { makeOciImage } from '../helpers/oci-image.js';
import { freePort } from '../helpers/registry.js';
import { compareTrees, prng } from '../helpers/tree.js';

/** One fixed time for every directory of every layer and of the expected tree (seconds.nanos). */
const DIR_TIME = '1600000000.123456789';

export interface LayeredImage {
  /** OCI image layout holding the image tagged `tag`. */
  layout: string;
  tag: string;
  /** `oci:LAYOUT:TAG` */
  ref: string;
  /** The layer directories, bottom first, and their gzip tar files. */
  layerDirs: string[];
  layerFiles: string[];
  /** The merged tree the image must show. */
  expected: string;
  /** Regular files of the expected tree (relative paths) with their sizes. */
  files: Map<string, number>;
}

async function fixDirTimes(root: string): Promise<void> {
  sh(`find '${root}' -type d -exec touch -h -d @${DIR_TIME} {} +`);
}

/**
 * Three layers over `seed`; `scale` multiplies the sizes of the big files (1 ≈ 7 MiB of data).
 * Directories are 0755 root:root in every layer, so that the merged attributes are known.
 */
export async function makeLayers(work: string, seed: number, scale = 1): Promise<string[]> {
  const l0 = join(work, 'layer0');
  const l1 = join(work, 'layer1');
  const l2 = join(work, 'layer2');
  for (const l of [l0, l1, l2]) {
    await mkdir(l);
    await chmod(l, 0o755);
  }
  const at = (l: string, ...p: string[]): string => join(l, ...p);
  // Layer 0: the base.
  for (const d of ['bin', 'data/old', 'data/keep', 'etc', 'lib']) await mkdir(at(l0, d), { recursive: true });
  await writeFile(at(l0, 'bin', 'tool'), prng(seed, Math.round(1.5 * scale * (1 << 20)) + 7));
  await chmod(at(l0, 'bin', 'tool'), 0o755);
  await writeFile(at(l0, 'data', 'multi.bin'), prng(seed + 1, Math.round(3 * scale * (1 << 20)) + 12345));
  await writeFile(at(l0, 'data', 'gone.txt'), 'removed by a whiteout in layer 1\n');
  await writeFile(at(l0, 'data', 'old', 'a.txt'), 'hidden by the opaque directory of layer 2\n');
  await writeFile(at(l0, 'data', 'old', 'b.bin'), prng(seed + 2, 70_000));
  await writeFile(at(l0, 'data', 'keep', 'kept.txt'), 'still here at the top\n');
  await writeFile(at(l0, 'etc', 'config'), 'version = 0\n');
  await symlink('config', at(l0, 'etc', 'link'));
  await writeFile(at(l0, 'hard-a'), prng(seed + 3, 40_000));
  await link(at(l0, 'hard-a'), at(l0, 'hard-b'));
  await writeFile(at(l0, 'owned'), 'owned by 1000:1001\n');
  await chown(at(l0, 'owned'), 1000, 1001);
  await writeFile(at(l0, 'with-xattr'), 'has a user xattr\n');
  native.lsetxattr(at(l0, 'with-xattr'), 'user.damselfly', Buffer.from('network test'));
  await writeFile(at(l0, 'empty'), '');
  for (let i = 0; i < 12; i++) await writeFile(at(l0, 'lib', `small-${i}`), prng(seed + 100 + i, 1000 + i * 997));
  // Layer 1: a whiteout, a changed file, a new library.
  for (const d of ['data', 'etc', 'lib']) await mkdir(at(l1, d), { recursive: true });
  await writeFile(at(l1, 'data', '.wh.gone.txt'), '');
  await writeFile(at(l1, 'etc', 'config'), 'version = 1\nchanged in layer 1\n');
  await writeFile(at(l1, 'lib', 'libfoo.so'), prng(seed + 4, Math.round(0.7 * scale * (1 << 20))));
  // Layer 2: an opaque directory, a new compressible file, a replaced binary.
  for (const d of ['data/old', 'new', 'bin']) await mkdir(at(l2, d), { recursive: true });
  await writeFile(at(l2, 'data', 'old', '.wh..wh..opq'), '');
  await writeFile(at(l2, 'data', 'old', 'c.txt'), 'the only file of the opaque directory\n');
  await writeFile(at(l2, 'new', 'text.txt'), Buffer.from('All work and no play makes Jack a dull boy.\n'.repeat(Math.round(24_000 * scale))));
  await writeFile(at(l2, 'bin', 'tool'), prng(seed + 5, Math.round(1.2 * scale * (1 << 20)) + 3));
  await chmod(at(l2, 'bin', 'tool'), 0o755);
  // Nanosecond mtimes on the files, one time on every directory.
  for (const l of [l0, l1, l2]) {
    sh(`find '${l}' ! -type d -exec touch -h -d @1650000000.987654321 {} +`);
    await fixDirTimes(l);
  }
  return [l0, l1, l2];
}

/** Applies OCI layers (directories) in order with cp(1): whiteouts hide lower entries only. */
export async function applyLayers(layers: string[], expected: string): Promise<void> {
  await mkdir(expected);
  await chmod(expected, 0o755);
  for (const l of layers) {
    const markers = sh(`cd '${l}' && find . -name '.wh.*' -print0`).split('\0').filter(Boolean);
    for (const m of markers) {
      const dir = join(expected, m, '..');
      const name = m.split('/').pop() as string;
      if (name === '.wh..wh..opq') sh(`[ -d '${dir}' ] && find '${dir}' -mindepth 1 -maxdepth 1 -exec rm -rf {} + || true`);
      else await rm(join(dir, name.slice('.wh.'.length)), { recursive: true, force: true });
    }
    sh(`cp -a '${l}/.' '${expected}/'`);
    sh(`find '${expected}' -name '.wh.*' -exec rm -rf {} +`);
  }
  await fixDirTimes(expected);
}

/** Relative paths and sizes of the regular files under `root`. */
export async function regularFiles(root: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const visit = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(join(root, p));
      if (st.isDirectory()) await visit(p);
      else if (st.isFile()) out.set(p, st.size);
    }
  };
  await visit('');
  return out;
}

/** The layered image of `seed` under `work`: layers, OCI layout, expected tree. */
export async function makeLayeredImage(work: string, seed: number, scale = 1, tag = 'v1'): Promise<LayeredImage> {
  await mkdir(work, { recursive: true });
  const layerDirs = await makeLayers(work, seed, scale);
  const layout = join(work, 'oci');
  await makeOciImage(layout, tag, layerDirs, work);
  const layerFiles = layerDirs.map((_, i) => join(work, `layer-${tag}-${i}.tar.gz`));
  const expected = join(work, 'expected');
  await applyLayers(layerDirs, expected);
  return { layout, tag, ref: `oci:${layout}:${tag}`, layerDirs, layerFiles, expected, files: await regularFiles(expected) };
}

export interface Converted {
  manifestDigest: string;
  /** Data blob digests (hex) in blob-table order. */
  blobs: string[];
  bootstrapDigest: string;
}

/** `damselfly convert` from an OCI layout (`oci:DIR:TAG`) into `host/repo:tag` over plain http. */
export async function convertTo(img: { ref: string; tag: string }, host: string, repo: string, opts: { creds?: { username: string; password: string }; extra?: string[] } = {}): Promise<Converted> {
  const r = await damselflyOk([
    'convert',
    '--source',
    img.ref,
    '--target',
    `docker://${host}/${repo}:${img.tag}`,
    '--plain-http',
    ...(opts.creds ? ['--target-creds', `${opts.creds.username}:${opts.creds.password}`] : []),
    ...(opts.extra ?? []),
    '--json',
  ]);
  return JSON.parse(r.stdout) as Converted;
}

export interface RegistryBackendOptions {
  host: string;
  repo: string;
  auth?: { username: string; password: string };
  timeoutSec?: number;
  retryLimit?: number;
  proxy?: { url: string; ping_url?: string; fallback?: boolean; check_interval?: number };
}

/**
 * A nydusd config v2 object with a registry backend (plain http), an optional cache, prefetch and
 * read amplification (`rafs.batch_size`; nydus and Damselfly default to 1 MiB when a config is
 * given: a read then also fetches the chunks stored after the one it needs).
 */
export function registryConfig(o: RegistryBackendOptions, extra: { cacheDir?: string; prefetch?: Record<string, unknown>; amplifyBytes?: number } = {}): Record<string, unknown> {
  return {
    version: 2,
    backend: {
      type: 'registry',
      registry: {
        scheme: 'http',
        host: o.host,
        repo: o.repo,
        ...(o.auth ? { auth: Buffer.from(`${o.auth.username}:${o.auth.password}`).toString('base64') } : {}),
        timeout: o.timeoutSec ?? 5,
        connect_timeout: o.timeoutSec ?? 5,
        retry_limit: o.retryLimit ?? 0,
        ...(o.proxy ? { proxy: o.proxy } : {}),
      },
    },
    ...(extra.cacheDir ? { cache: { type: 'blobcache', filecache: { work_dir: extra.cacheDir } } } : {}),
    ...(extra.prefetch || extra.amplifyBytes !== undefined
      ? { rafs: { mode: 'direct', ...(extra.amplifyBytes !== undefined ? { batch_size: extra.amplifyBytes } : {}), ...(extra.prefetch ? { prefetch: extra.prefetch } : {}) } }
      : {}),
  };
}

export async function writeConfig(path: string, cfg: Record<string, unknown>): Promise<string> {
  await writeFile(path, JSON.stringify(cfg, null, 2));
  return path;
}

/** Reads every listed file under `mnt` and compares it with the same file under `expected`. */
export async function readEveryFile(mnt: string, expected: string, files: Iterable<string>): Promise<string[]> {
  const bad: string[] = [];
  for (const f of files) {
    const [a, b] = await Promise.all([readFile(join(mnt, f)).catch((e: NodeJS.ErrnoException) => e), readFile(join(expected, f))]);
    if (!Buffer.isBuffer(a)) bad.push(`${f}: ${a.code ?? a.message}`);
    else if (!a.equals(b)) bad.push(`${f}: ${a.length} bytes differ from the expected ${b.length}`);
  }
  return bad;
}

/**
 * Reads a file through the mount: 'ok' when its bytes equal `expected`, the errno code when the
 * read fails, 'WRONG BYTES' otherwise (short or different data); and how long it took.
 */
export async function readOutcome(path: string, expected: Buffer): Promise<{ outcome: string; ms: number }> {
  const t0 = Date.now();
  let outcome: string;
  try {
    const got = await readFile(path);
    outcome = got.equals(expected) ? 'ok' : 'WRONG BYTES';
  } catch (e) {
    outcome = (e as NodeJS.ErrnoException).code ?? String(e);
  }
  return { outcome, ms: Date.now() - t0 };
}

/** Reads `length` bytes at `offset` of a file (one pread). */
export async function preadFile(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(length);
    const { bytesRead } = await fh.read(b, 0, length, offset);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export type Stats = Record<string, number>;

export function statsOf(stdout: string): Stats {
  return JSON.parse(stdout) as Stats;
}

/** Lazily detaches a mount left behind by a killed daemon (no error if nothing is mounted). */
export function detach(mnt: string): void {
  spawnSync('umount', ['-l', mnt]);
}

/**
 * A new, empty mountpoint for every mount (`next()`), all detached at the end (`detachAll()`):
 * a daemon that dies without unmounting spoils its own test only, not the ones after it.
 */
export class Mountpoints {
  private n = 0;
  private readonly made: string[] = [];

  constructor(private readonly dir: string) {}

  async next(): Promise<string> {
    const p = join(this.dir, `mnt-${this.n++}`);
    await mkdir(p, { recursive: true });
    this.made.push(p);
    return p;
  }

  detachAll(): void {
    for (const p of this.made) detach(p);
  }
}

/** (Where the network tests have always found it.) */
export { waitFor };

// ---------------------------------------------------------------------------------------------
// nginx (Debian nginx-light) as a caching reverse proxy in front of a registry

export const NGINX = '/usr/sbin/nginx';

export function nginxMissing(): string | undefined {
  return spawnSync(NGINX, ['-v']).status === 0 ? undefined : `${NGINX} (Debian nginx-light) is not installed`;
}

export interface Nginx {
  host: string;
  url: string;
  port: number;
  /** `http://127.0.0.1:PORT/ping` */
  pingUrl: string;
  /** Lines of the access log: "METHOD URI STATUS BYTES CACHE". */
  accessLog(): Promise<string[]>;
  /** SIGKILL of nginx's whole process group (master and workers), as a crash. */
  kill(): Promise<void>;
  /** Starts it again on the same port and cache. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const liveNginx = new Set<ChildProcess>();
let nginxHook = false;

function killGroup(c: ChildProcess, sig: NodeJS.Signals): void {
  if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
  try {
    process.kill(-c.pid, sig);
  } catch {
    c.kill(sig);
  }
}

function nginxConf(prefix: string, port: number, upstream: string): string {
  return `${process.getuid?.() === 0 ? 'user root root;\n' : ''}worker_processes 1;
error_log ${prefix}/error.log warn;
events { worker_connections 256; }
http {
  log_format brief '$request_method $request_uri $status $body_bytes_sent $upstream_cache_status';
  access_log ${prefix}/access.log brief;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  proxy_cache_path ${prefix}/cache levels=1:2 keys_zone=blobs:10m max_size=1g inactive=60m use_temp_path=off;
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 0;
    location = /ping { return 200 "pong\\n"; }
    location / {
      proxy_pass http://${upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Via-Nginx 1;
      # Ranged blob reads are cached per range (nginx-light has no slice module).
      proxy_set_header Range $http_range;
      proxy_set_header If-Range $http_if_range;
      proxy_cache blobs;
      proxy_cache_key $request_method$uri$is_args$args$http_range;
      proxy_cache_valid 200 206 10m;
      proxy_force_ranges on;
    }
  }
}
`;
}

async function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** Starts nginx on 127.0.0.1 in front of `upstream` (host:port); its files live in `prefix`. */
export async function startNginx(prefix: string, upstream: string): Promise<Nginx> {
  if (!nginxHook) {
    nginxHook = true;
    process.on('exit', () => {
      for (const c of liveNginx) killGroup(c, 'SIGKILL');
    });
  }
  for (const d of ['tmp/body', 'tmp/proxy', 'tmp/fastcgi', 'tmp/uwsgi', 'tmp/scgi', 'cache']) await mkdir(join(prefix, d), { recursive: true });
  const port = await freePort();
  const conf = join(prefix, 'nginx.conf');
  await writeFile(conf, nginxConf(prefix, port, upstream));
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const launch = async (): Promise<void> => {
    const c = spawn(NGINX, ['-p', prefix, '-c', conf, '-g', `daemon off; pid ${prefix}/nginx.pid;`], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    liveNginx.add(c);
    exited = new Promise((resolve) => c.once('exit', () => resolve()));
    void exited.then(() => liveNginx.delete(c));
    child = c;
    await waitFor(
      `nginx on port ${port}`,
      async () => {
        if (c.exitCode !== null) throw new Error(`nginx exited ${c.exitCode}: ${err}${await readFile(join(prefix, 'error.log'), 'utf8').catch(() => '')}`);
        return (await httpStatus(`http://127.0.0.1:${port}/ping`)) === 200;
      },
      10_000,
    );
  };
  await launch();
  const kill = async (): Promise<void> => {
    if (child) killGroup(child, 'SIGKILL');
    await exited;
  };
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    port,
    pingUrl: `http://127.0.0.1:${port}/ping`,
    accessLog: async () => (await readFile(join(prefix, 'access.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean),
    kill,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: kill,
  };
}

// ---------------------------------------------------------------------------------------------
// Tests of the fixtures: registered only when this file is the one run, not when imported.

const isMain = resolve(process.argv[1] ?? '') === fileURLToPath(import.meta.url);

if (isMain) test('the expected tree of the layered fixture applies the whiteout and the opaque directory', async () => {
  await withTempDir('net-fixture', async (work) => {
    const img = await makeLayeredImage(join(work, 'img'), 7, 0.1);
    const paths = [...img.files.keys()];
    assert.ok(!paths.includes('data/gone.txt'), 'the whiteout removes data/gone.txt');
    assert.ok(!paths.some((p) => p.startsWith('data/old/') && p !== 'data/old/c.txt'), 'the opaque directory hides data/old/a.txt and b.bin');
    assert.ok(paths.includes('data/old/c.txt') && paths.includes('data/keep/kept.txt'));
    assert.ok(!paths.some((p) => p.includes('.wh.')), 'no whiteout marker remains');
    assert.equal(await readFile(join(img.expected, 'etc', 'config'), 'utf8'), 'version = 1\nchanged in layer 1\n');
    assert.ok((await readFile(join(img.expected, 'bin', 'tool'))).equals(await readFile(join(img.layerDirs[2] as string, 'bin', 'tool'))));
    assert.equal((await lstat(join(img.expected, 'owned'))).uid, 1000);
    assert.equal(native.lgetxattr(join(img.expected, 'with-xattr'), 'user.damselfly')?.toString(), 'network test');
    assert.equal((await lstat(join(img.expected, 'hard-a'))).ino, (await lstat(join(img.expected, 'hard-b'))).ino);
    // GNU tar extraction of the layer files (whiteouts applied by hand) gives the same tree.
    const gnu = join(work, 'gnu');
    await mkdir(gnu);
    await chmod(gnu, 0o755);
    for (const f of img.layerFiles) {
      const names = sh(`tar -tzf '${f}'`).split('\n').filter(Boolean);
      for (const n of names) {
        const base = n.split('/').pop() as string;
        const dir = join(gnu, n, '..');
        if (base === '.wh..wh..opq') sh(`[ -d '${dir}' ] && find '${dir}' -mindepth 1 -maxdepth 1 -exec rm -rf {} + || true`);
        else if (base.startsWith('.wh.')) await rm(join(dir, base.slice(4)), { recursive: true, force: true });
      }
      sh(`tar --xattrs --xattrs-include='*' --numeric-owner -xzf '${f}' -C '${gnu}'`);
      sh(`find '${gnu}' -name '.wh.*' -exec rm -rf {} +`);
    }
    await fixDirTimes(gnu);
    assert.deepEqual(await compareTrees(img.expected, gnu), []);
  });
});

if (isMain) test('nginx proxies ranged registry-style requests, caches them and answers /ping', async () => {
  requireTool(nginxMissing());
  await withTempDir('net-nginx', async (work) => {
    const { createServer } = await import('node:http');
    const body = prng(3, 100_000);
    let upstreamRequests = 0;
    const srv = createServer((req, res) => {
      upstreamRequests++;
      const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
      if (m) {
        const [s, e] = [Number(m[1]), Number(m[2])];
        res.writeHead(206, { 'content-range': `bytes ${s}-${e}/${body.length}`, 'content-length': e - s + 1, 'cache-control': 'max-age=3600', 'x-via': String(req.headers['x-via-nginx']) });
        res.end(body.subarray(s, e + 1));
      } else {
        res.writeHead(200, { 'content-length': body.length }).end(body);
      }
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const upstream = `127.0.0.1:${(srv.address() as { port: number }).port}`;
    const ngx = await startNginx(join(work, 'nginx'), upstream);
    try {
      const get = (range: string): Promise<{ status: number; data: Buffer }> =>
        new Promise((resolve, reject) => {
          httpRequest(`${ngx.url}/v2/x/blobs/sha256:00`, { headers: { range } }, (res) => {
            const parts: Buffer[] = [];
            res.on('data', (d: Buffer) => parts.push(d));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, data: Buffer.concat(parts) }));
          })
            .on('error', reject)
            .end();
        });
      for (let i = 0; i < 2; i++) {
        const r = await get('bytes=1000-4999');
        assert.equal(r.status, 206);
        assert.ok(r.data.equals(body.subarray(1000, 5000)));
      }
      const other = await get('bytes=50000-50009');
      assert.ok(other.data.equals(body.subarray(50000, 50010)));
      assert.equal(upstreamRequests, 2, 'the repeated range came from the nginx cache');
      assert.equal(await httpStatus(ngx.pingUrl), 200);
      await ngx.kill();
      assert.equal(await httpStatus(ngx.pingUrl), 0, 'a killed nginx refuses connections');
      await ngx.restart();
      assert.equal(await httpStatus(ngx.pingUrl), 200);
      assert.ok((await ngx.accessLog()).some((l) => / 206 4000 HIT$/.test(l)));
    } finally {
      await ngx.stop();
      srv.close();
    }
  });
});
