/**
 * Lazy loading from every network backend: one OCI image (three gzip layers with a whiteout and an
 * opaque directory) is converted with `damselfly convert` into Debian's docker-registry — open,
 * behind htpasswd Basic auth, and behind Bearer-token auth with a token service this test runs —
 * built with `damselfly build` and uploaded to moto (S3), and served through nginx as a caching
 * reverse proxy in front of the registry (a Dragonfly peer's role). Each is mounted with
 * `damselfly mount` and every entry of the mount is compared with the expected merged tree
 * (content, mode, owner, nanosecond mtime, xattrs, symlinks, hardlinks).
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { damselfly, damselflyOk, requireTool } from '../helpers/env.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { startMount } from '../helpers/mount.js';
import { type Moto, motoMissing, startMoto } from '../helpers/moto.js';
import { type TestRegistry, registryMissing, startRegistry } from '../helpers/registry.js';
import { compareTrees, listTree, type Entry } from '../helpers/tree.js';
import { type Converted, type LayeredImage, type Nginx, Mountpoints, convertTo, makeLayeredImage, nginxMissing, registryConfig, startNginx, statsOf, writeConfig } from './network-fixtures.test.js';

requireTool(registryMissing());
requireTool(motoMissing());
requireTool(nginxMissing());

describe('lazy loading from network backends', () => {
  let work: string;
  let img: LayeredImage;
  let expectedListing: Map<string, Entry>;
  const registries: Partial<Record<'none' | 'basic' | 'token', TestRegistry>> = {};
  const converted: Partial<Record<'none' | 'basic' | 'token', Converted>> = {};
  let mnt: string;
  let mps: Mountpoints;
  let n = 0;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'damselfly-net-backends-'));
    mps = new Mountpoints(work);
    const [image, none, basic, token] = await Promise.all([
      makeLayeredImage(join(work, 'img'), 11),
      startRegistry({ auth: 'none' }),
      startRegistry({ auth: 'basic' }),
      startRegistry({ auth: 'token' }),
    ]);
    img = image;
    expectedListing = await listTree(img.expected);
    Object.assign(registries, { none, basic, token });
    converted.none = await convertTo(img, none.host, 'net/app');
    converted.basic = await convertTo(img, basic.host, 'net/app', { creds: basic.credentials });
    converted.token = await convertTo(img, token.host, 'net/app', { creds: token.credentials });
  });
  after(async () => {
    mps?.detachAll();
    await Promise.all(Object.values(registries).map((r) => r.stop()));
    await rm(work, { recursive: true, force: true });
  });

  /** Mounts with `args`, compares the whole tree, unmounts; returns the daemon's counters. */
  async function mountAndCompare(args: string[], env?: NodeJS.ProcessEnv): Promise<Record<string, number>> {
    mnt = await mps.next();
    const m = await startMount([...args, '--stats'], mnt, undefined, env);
    const diffs = await compareTrees(img.expected, mnt, { leftListing: expectedListing }).catch((e: unknown) => [`compare failed: ${String(e)}`]);
    const r = await m.stop();
    assert.deepEqual(diffs, [], r.stderr);
    assert.equal(r.code, 0, r.stderr);
    const s = statsOf(r.stdout);
    assert.equal(s['storage.verify_failures'] ?? 0, 0);
    return s;
  }

  const cacheDir = (): string => join(work, `cache-${n++}`);

  test('open registry: convert, mount --image --plain-http, every file equal', async () => {
    const reg = registries.none as TestRegistry;
    const s = await mountAndCompare(['--image', `docker://${reg.host}/net/app:${img.tag}`, '--plain-http', '--cache-dir', cacheDir()]);
    assert.ok((s['storage.backend_bytes'] ?? 0) > 0, 'chunks came from the registry');
  });

  test('check, inspect, unpack and export --image read the pushed image without a mount; a damaged blob fails check; --image stands alone', async () => {
    const reg = registries.none as TestRegistry;
    const conv = converted.none as Converted;
    // Through a counting proxy: each request to a registry is a round trip.
    const proxy = await startFaultProxy({ target: reg.host });
    const blobGets = (): number => proxy.requestsTo(/\/blobs\/sha256:/).filter((r) => r.method === 'GET').length;
    try {
      const viaProxy = ['--image', `docker://${proxy.host}/net/app:${img.tag}`, '--plain-http'];
      const report = JSON.parse((await damselflyOk(['check', ...viaProxy, '--json'])).stdout) as { ok: boolean; blobs: number; chunksVerified: number; problems: unknown[] };
      assert.deepEqual(report.problems, []);
      assert.equal(report.ok, true);
      assert.equal(report.blobs, conv.blobs.length);
      assert.ok(report.chunksVerified > 10, `${report.chunksVerified} chunks`);
      // The chunks are read in 4 MiB windows, not a request each: per blob its ToC, blob meta and
      // chunk digests, then its windows, once (they feed the blob id's hash too); and the bootstrap layer.
      const windows = async (id: string): Promise<number> => Math.ceil(Number((await fetch(`${reg.url}/v2/net/app/blobs/sha256:${id}`, { method: 'HEAD' })).headers.get('content-length')) / (4 << 20));
      let bound = 1;
      for (const id of conv.blobs) bound += 3 + (await windows(id));
      assert.ok(blobGets() <= bound, `check: ${blobGets()} blob GETs for ${report.chunksVerified} chunks (at most ${bound})`);
      proxy.resetStats();
      const out = join(work, 'unpacked');
      await damselflyOk(['unpack', ...viaProxy, '--output', out]);
      assert.deepEqual(await compareTrees(img.expected, out, { leftListing: expectedListing }), []);
      assert.ok(blobGets() <= 2 * conv.blobs.length + 1, `unpack: ${blobGets()} blob GETs`);
    } finally {
      await proxy.stop();
    }
    const ref = ['--image', `docker://${reg.host}/net/app:${img.tag}`, '--plain-http'];
    const summary = JSON.parse((await damselflyOk(['inspect', ...ref, '--json', '--no-tree'])).stdout) as { version: number; blobs: Array<{ id: string }> };
    assert.equal(summary.version, 6);
    assert.deepEqual(summary.blobs.map((b) => b.id).sort(), [...conv.blobs].sort());
    const views = join(work, 'views');
    const written = JSON.parse((await damselflyOk(['export', ...ref, '--blob-views', views, '--json'])).stdout) as string[];
    assert.deepEqual(written.map((p) => p.slice(views.length + 1)).sort(), conv.blobs.map((id) => `${id}.blob.data`).sort());
    // --image stands alone.
    const mixed = await damselfly(['check', ...ref, '--blob-dir', work]);
    assert.equal(mixed.code, 2, mixed.stderr);
    assert.match(mixed.stderr, /--image replaces --bootstrap, --blob and --blob-dir/);
    const plain = await damselfly(['check', '--bootstrap', join(work, 'none'), '--plain-http']);
    assert.equal(plain.code, 2, plain.stderr);
    assert.match(plain.stderr, /--plain-http goes with --image/);
    // One byte of a data blob flipped in the registry's storage (which serves it as it is).
    const id = conv.blobs[0] as string;
    const stored = join(reg.dataDir, 'docker/registry/v2/blobs/sha256', id.slice(0, 2), id, 'data');
    const original = await readFile(stored);
    const damaged = Buffer.from(original);
    damaged[1000] = (damaged[1000] as number) ^ 0xff;
    await writeFile(stored, damaged);
    try {
      const r = await damselfly(['check', ...ref]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stdout, new RegExp(`^PROBLEM \\(.*blob ${id}, chunk \\d+\\)`, 'm'));
      assert.match(r.stdout, /^FAILED$/m);
    } finally {
      await writeFile(stored, original);
    }
  });

  test('htpasswd Basic auth: convert --target-creds, mount --image with the config auth', async () => {
    const reg = registries.basic as TestRegistry;
    const ref = `docker://${reg.host}/net/app:${img.tag}`;
    // Nothing saved by a `docker login` on the machine running the tests is read.
    const nothingSaved = { DOCKER_CONFIG: join(work, 'no-docker-config'), REGISTRY_AUTH_FILE: join(work, 'no-auth.json') };
    // Without credentials the registry refuses the manifest: the mount fails, cleanly.
    const refused = await damselfly(['mount', '--image', ref, '--plain-http', await mps.next()], { timeoutMs: 30_000, env: nothingSaved });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /401|unauthori[sz]ed|credentials/i);
    const cfg = await writeConfig(join(work, 'basic.json'), registryConfig({ host: reg.host, repo: 'net/app', auth: reg.credentials }));
    const s = await mountAndCompare(['--image', ref, '--plain-http', '--config', cfg, '--cache-dir', cacheDir()], nothingSaved);
    assert.ok((s['storage.backend_bytes'] ?? 0) > 0);
  });

  test('credentials a `docker login` saved serve mount --image, check --image and convert without flags, from the file or a credential helper', async () => {
    const reg = registries.basic as TestRegistry;
    const creds = reg.credentials;
    assert.ok(creds);
    const ref = `docker://${reg.host}/net/app:${img.tag}`;
    const saved = join(work, 'docker-config');
    await mkdir(saved, { recursive: true });
    await writeFile(join(saved, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') } } }));
    const env = { DOCKER_CONFIG: saved, REGISTRY_AUTH_FILE: join(work, 'no-auth.json') };
    const s = await mountAndCompare(['--image', ref, '--plain-http', '--cache-dir', cacheDir()], env);
    assert.ok((s['storage.backend_bytes'] ?? 0) > 0);
    const checked = await damselfly(['check', '--image', ref, '--plain-http'], { env });
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, /^OK$/m);
    const pushed = await damselfly(['convert', '--source', img.ref, '--target', `docker://${reg.host}/net/app:saved-creds`, '--plain-http'], { env });
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.doesNotMatch(checked.stderr + pushed.stderr, new RegExp(creds.password), 'the password is never printed');
    // A credential helper, as `docker login` with one configured leaves it: asked, as Docker asks.
    const bin = join(work, 'helper-bin');
    await mkdir(bin, { recursive: true });
    const script = join(bin, 'docker-credential-damselfly-test');
    await writeFile(script, `#!/bin/sh\nread server\n[ "$1" = get ] && [ "$server" = '${reg.host}' ] && printf '{"Username":"%s","Secret":"%s"}' '${creds.username}' '${creds.password}'\n`);
    await chmod(script, 0o755);
    await writeFile(join(saved, 'config.json'), JSON.stringify({ auths: { [reg.host]: {} }, credsStore: 'damselfly-test' }));
    const withHelper = { ...env, PATH: `${bin}:${process.env.PATH ?? ''}` };
    const helped = await damselfly(['check', '--image', ref, '--plain-http'], { env: withHelper });
    assert.equal(helped.code, 0, helped.stderr);
    // One that is not installed: named in a warning, and the registry's refusal reported.
    await writeFile(join(saved, 'config.json'), JSON.stringify({ credHelpers: { [reg.host]: 'secretservice' } }));
    const missing = await damselfly(['check', '--image', ref, '--plain-http'], { env: withHelper, timeoutMs: 30_000 });
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /docker-credential-secretservice: not found in PATH/);
    assert.match(missing.stderr, /401|unauthori[sz]ed|credentials/i);
  });

  test('token auth: the daemon gets a pull token from the token service with the config auth; the bootstrap it saved serves with --bootstrap --config', async () => {
    const reg = registries.token as TestRegistry;
    const ts = reg.tokenService;
    assert.ok(ts);
    const before = ts.requests.length;
    const cfg = await writeConfig(join(work, 'token.json'), registryConfig({ host: reg.host, repo: 'net/app', auth: reg.credentials }));
    const cache = cacheDir();
    const s = await mountAndCompare(['--image', `docker://${reg.host}/net/app:${img.tag}`, '--plain-http', '--config', cfg, '--cache-dir', cache]);
    assert.ok((s['storage.backend_bytes'] ?? 0) > 0);
    const mine = ts.requests.slice(before);
    assert.ok(mine.length > 0 && mine.every((r) => r.user === 'damselfly'), JSON.stringify(mine));
    assert.ok(mine.some((r) => r.scopes.includes('repository:net/app:pull')));
    // One token: the chunk reads go on with the client that fetched the manifest and bootstrap.
    assert.equal(mine.length, 1, JSON.stringify(mine));
    // The daemon kept the bootstrap next to its cache: with a registry backend in --config (host,
    // repo, auth) and no --image, it serves the same tree, its chunks fetched again (new cache).
    const name = (await readdir(cache)).find((f) => f.endsWith('.image.boot'));
    assert.ok(name, 'the daemon keeps the bootstrap in its cache directory');
    const cfg2 = await writeConfig(join(work, 'token-boot.json'), registryConfig({ host: reg.host, repo: 'net/app', auth: reg.credentials }, { cacheDir: cacheDir() }));
    const s2 = await mountAndCompare(['--bootstrap', join(cache, name), '--config', cfg2]);
    assert.equal(s2['storage.backend_bytes'], s['storage.backend_bytes']);
  });

  test('token auth with a saved identity token: check --image exchanges it (refresh-token grant), from the file or from a helper', async () => {
    const reg = registries.token as TestRegistry;
    const ts = reg.tokenService as NonNullable<TestRegistry['tokenService']>;
    const idt = ts.identityTokens[reg.credentials?.username as string] as string;
    const saved = join(work, 'idt-docker-config');
    await mkdir(saved, { recursive: true });
    // As some registries' `docker login` leaves it: a placeholder user and the identity token.
    await writeFile(join(saved, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('00000000-0000-0000-0000-000000000000:').toString('base64'), identitytoken: idt } } }));
    const env = { DOCKER_CONFIG: saved, REGISTRY_AUTH_FILE: join(work, 'no-auth.json') };
    const ref = `docker://${reg.host}/net/app:${img.tag}`;
    const before = ts.requests.length;
    const checked = await damselfly(['check', '--image', ref, '--plain-http'], { env });
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout, /^OK$/m);
    const mine = ts.requests.slice(before);
    assert.ok(mine.length > 0 && mine.every((r) => r.grant === 'refresh_token' && r.user === reg.credentials?.username), JSON.stringify(mine));
    assert.doesNotMatch(checked.stderr, new RegExp(idt), 'the identity token is never printed');
    // The same token from a credential helper (Username "<token>").
    const bin = join(work, 'idt-helper-bin');
    await mkdir(bin, { recursive: true });
    const script = join(bin, 'docker-credential-damselfly-idt');
    await writeFile(script, `#!/bin/sh\nread server\n[ "$1" = get ] && [ "$server" = '${reg.host}' ] && printf '{"Username":"<token>","Secret":"%s"}' '${idt}'\n`);
    await chmod(script, 0o755);
    await writeFile(join(saved, 'config.json'), JSON.stringify({ credHelpers: { [reg.host]: 'damselfly-idt' } }));
    const helped = await damselfly(['check', '--image', ref, '--plain-http'], { env: { ...env, PATH: `${bin}:${process.env.PATH ?? ''}` } });
    assert.equal(helped.code, 0, helped.stderr);
    assert.equal(ts.requests.at(-1)?.grant, 'refresh_token');
    // A revoked (unknown) one: the token service's refusal, clearly.
    await writeFile(join(saved, 'config.json'), JSON.stringify({ auths: { [reg.host]: { identitytoken: 'idt-revoked' } } }));
    const refused = await damselfly(['check', '--image', ref, '--plain-http'], { env, timeoutMs: 30_000 });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /HTTP 400 \(token service refused the credentials\)/);
  });

  describe('S3 (moto)', () => {
    let moto: Moto;
    before(async () => {
      moto = await startMoto();
    });
    after(async () => {
      await moto?.stop();
    });

    test('damselfly build, blobs uploaded to moto, mount --config s3 --bootstrap: every file equal', async () => {
      const out = join(work, 's3-build');
      await damselflyOk(['build', '--bootstrap', join(out, 'image.boot'), '--blob-dir', join(out, 'blobs'), ...img.layerFiles]);
      const s3 = new S3Client({ endpoint: moto.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret' }, requestChecksumCalculation: 'WHEN_REQUIRED' });
      await s3.send(new CreateBucketCommand({ Bucket: 'images' }));
      const blobs = await readdir(join(out, 'blobs'));
      assert.equal(blobs.length, 3, 'one blob per layer');
      for (const b of blobs) await s3.send(new PutObjectCommand({ Bucket: 'images', Key: `nydus/${b}`, Body: await readFile(join(out, 'blobs', b)) }));
      s3.destroy();
      const cfg = await writeConfig(join(work, 's3.json'), {
        version: 2,
        backend: {
          type: 's3',
          s3: { endpoint: `127.0.0.1:${moto.port}`, scheme: 'http', region: 'us-east-1', bucket_name: 'images', object_prefix: 'nydus/', access_key_id: 'AKIDTEST', access_key_secret: 'secret', force_path_style: true, timeout: 5, retry_limit: 2 },
        },
        cache: { type: 'blobcache', filecache: { work_dir: cacheDir() } },
      });
      const s = await mountAndCompare(['--bootstrap', join(out, 'image.boot'), '--config', cfg]);
      assert.ok((s['storage.backend_bytes'] ?? 0) > 0);
    });
  });

  describe('nginx caching reverse proxy in front of the registry', () => {
    let ngx: Nginx;
    before(async () => {
      ngx = await startNginx(join(work, 'nginx'), (registries.none as TestRegistry).host);
    });
    after(async () => {
      await ngx?.stop();
    });

    test('blobs through the proxy (config proxy.url): every file equal; a second cold daemon is served from the nginx cache', async () => {
      const reg = registries.none as TestRegistry;
      const cfg = await writeConfig(join(work, 'proxy.json'), registryConfig({ host: reg.host, repo: 'net/app', proxy: { url: ngx.url, ping_url: ngx.pingUrl, fallback: true, check_interval: 1 } }));
      const ref = `docker://${reg.host}/net/app:${img.tag}`;
      const s1 = await mountAndCompare(['--image', ref, '--plain-http', '--config', cfg, '--cache-dir', cacheDir()]);
      assert.equal(s1['backend.origin_fallbacks'] ?? 0, 0, 'no read went around the proxy');
      const blobLines = (await ngx.accessLog()).filter((l) => /^GET \/v2\/net\/app\/blobs\/sha256:/.test(l));
      assert.ok(blobLines.length > 0, 'the blob reads went through nginx');
      assert.ok(blobLines.every((l) => / 206 \d+ /.test(l)), `ranged answers only:\n${blobLines.join('\n')}`);
      // A new daemon with an empty cache reads the same ranges: nginx answers them from its cache.
      const s2 = await mountAndCompare(['--image', ref, '--plain-http', '--config', cfg, '--cache-dir', cacheDir()]);
      assert.equal(s2['backend.origin_fallbacks'] ?? 0, 0);
      const hits = (await ngx.accessLog()).filter((l) => /^GET \/v2\/net\/app\/blobs\/sha256:.* HIT$/.test(l));
      assert.ok(hits.length > 0, 'the second daemon was served from the proxy cache');
    });
  });
});
