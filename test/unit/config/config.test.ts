import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { configWithoutSecrets, decodeRegistryAuth, loadConfigFile, parseConfig, parseConfigObject } from '../../../src/config/index.js';
import { PREFETCH_OFF, PROXY_DEFAULT, SNAPSHOTTER_V1, SPEC_V1, parse } from './fixtures.js';

// rafs-format.md §7.9
const SPEC_TOML = `
version = 2
id = "my_id"

[backend]
type = "registry"
[backend.registry]
scheme = "https"
host = "registry.example.com"
repo = "library/app"
auth = "dXNlcjpwYXNz"
timeout = 10
connect_timeout = 10
retry_limit = 3
[backend.registry.proxy]
url = "http://127.0.0.1:65001"
fallback = true

[cache]
type = "filecache"
validate = false
[cache.filecache]
work_dir = "/var/lib/nydus/cache"
[cache.prefetch]
enable = true
threads = 8
batch_size = 1048576

[rafs]
mode = "direct"
validate = false
enable_xattr = true
[rafs.prefetch]
enable = true
threads = 8
batch_size = 1048576
prefetch_all = true
`;

test('the TOML example of §7.9 gives the whole normalized config', () => {
  const { cfg, warnings } = parse(SPEC_TOML);
  assert.deepEqual(warnings, []);
  const on = { ...PREFETCH_OFF, enable: true };
  assert.deepEqual(cfg, {
    sourceVersion: 2,
    id: 'my_id',
    backend: {
      type: 'registry',
      scheme: 'https',
      host: 'registry.example.com',
      repo: 'library/app',
      auth: { username: 'user', password: 'pass' },
      blobUrlScheme: '',
      blobRedirectedHost: '',
      skipVerify: false,
      caCertFiles: [],
      timeoutMs: 10000,
      connectTimeoutMs: 10000,
      retryLimit: 3,
      proxy: { ...PROXY_DEFAULT, url: 'http://127.0.0.1:65001' },
      mirrors: [],
    },
    externalBackends: [],
    cache: {
      type: 'filecache',
      workDir: '/var/lib/nydus/cache',
      validate: false,
      compressed: false,
      prefetch: on,
      disableIndexedMap: false,
      enableEncryption: false,
      enableConvergentEncryption: false,
      encryptionKey: '',
    },
    rafs: {
      mode: 'direct',
      batchSizeBytes: 1048576,
      validate: false,
      enableXattr: true,
      iostatsFiles: false,
      accessPattern: false,
      latestReadFiles: false,
      prefetch: { ...on, prefetchAll: true },
    },
    prefetch: { ...on, prefetchAll: true },
  });
});

test('a v2 JSON config: s3 backend with proxy, fscache, rafs options, overlay and external backends', () => {
  const { cfg } = parse(
    JSON.stringify({
      version: 2,
      id: 'inst',
      backend: {
        type: 's3',
        s3: {
          scheme: 'http',
          endpoint: 'minio:9000',
          region: 'us-east-1',
          bucket_name: 'blobs',
          object_prefix: 'nydus/',
          access_key_id: 'AK',
          access_key_secret: 'SK',
          retry_limit: 255,
          timeout: 0,
          proxy: { url: 'https://df:65001', ping_url: 'https://df:65001/ping', fallback: false, check_interval: 7, use_http: true },
        },
      },
      external_backends: [{ patch: { id: 'x' }, type: 'localfs', config: { dir: '/b' } }],
      cache: { type: 'fscache', fscache: { work_dir: '/var/cache/fs' }, validate: true },
      rafs: { mode: 'cached', batch_size: 0, validate: true, iostats_files: true, access_pattern: true, latest_read_files: true },
      overlay: { upper_dir: '/u', work_dir: '/w' },
    }),
  );
  assert.deepEqual(cfg.backend, {
    type: 's3',
    scheme: 'http',
    endpoint: 'minio:9000',
    region: 'us-east-1',
    bucketName: 'blobs',
    objectPrefix: 'nydus/',
    accessKeyId: 'AK',
    accessKeySecret: 'SK',
    forcePathStyle: true,
    skipVerify: false,
    caCertFiles: [],
    timeoutMs: 0,
    connectTimeoutMs: 5000,
    retryLimit: 255,
    proxy: { ...PROXY_DEFAULT, url: 'https://df:65001', pingUrl: 'https://df:65001/ping', fallback: false, checkIntervalMs: 7000, useHttp: true },
  });
  assert.equal(cfg.cache.type, 'fscache');
  assert.equal(cfg.cache.workDir, '/var/cache/fs');
  assert.equal(cfg.cache.validate, true);
  assert.deepEqual(cfg.rafs, {
    mode: 'cached',
    batchSizeBytes: 0,
    validate: true,
    enableXattr: false,
    iostatsFiles: true,
    accessPattern: true,
    latestReadFiles: true,
    prefetch: PREFETCH_OFF,
  });
  assert.deepEqual(cfg.overlay, { upperDir: '/u', workDir: '/w' });
  assert.deepEqual(cfg.externalBackends, [{ patch: { id: 'x' }, type: 'localfs', config: { dir: '/b' } }]);
  assert.equal(cfg.sourceVersion, 2);
});

test('defaults: minimal configs of every backend type', () => {
  const min = (type: string, sub: object) => parse({ version: 2, backend: { type, [type]: sub } }).cfg;
  const r = min('registry', { host: 'r.io', repo: 'a/b' });
  assert.deepEqual(r.backend, {
    type: 'registry',
    scheme: 'https',
    host: 'r.io',
    repo: 'a/b',
    blobUrlScheme: '',
    blobRedirectedHost: '',
    skipVerify: false,
    caCertFiles: [],
    timeoutMs: 5000,
    connectTimeoutMs: 5000,
    retryLimit: 0,
    proxy: PROXY_DEFAULT,
    mirrors: [],
  });
  assert.equal(r.id, '');
  assert.deepEqual(r.cache, {
    type: '',
    validate: false,
    compressed: false,
    prefetch: PREFETCH_OFF,
    disableIndexedMap: false,
    enableEncryption: false,
    enableConvergentEncryption: false,
    encryptionKey: '',
  });
  assert.equal(r.rafs.mode, 'direct');
  assert.equal(r.rafs.batchSizeBytes, 1048576);
  assert.deepEqual(r.rafs.prefetch, PREFETCH_OFF);
  assert.deepEqual(r.prefetch, PREFETCH_OFF);
  assert.equal(r.overlay, undefined);

  const s3 = min('s3', { endpoint: '', region: 'eu-west-1', bucket_name: 'b' }).backend;
  assert.ok(s3.type === 's3');
  assert.equal(s3.endpoint, 's3.amazonaws.com');
  assert.equal(s3.forcePathStyle, true);
  assert.equal(s3.scheme, 'https');
  const s3vh = min('s3', { endpoint: 'e', region: 'r', bucket_name: 'b', force_path_style: false }).backend;
  assert.ok(s3vh.type === 's3' && s3vh.forcePathStyle === false);

  assert.deepEqual(min('localfs', { dir: '/d' }).backend, { type: 'localfs', dir: '/d', altDirs: [], blobFile: '' });
  assert.deepEqual(min('localfs', { blob_file: '/f', alt_dirs: ['/a'] }).backend, { type: 'localfs', dir: '', altDirs: ['/a'], blobFile: '/f' });
  assert.deepEqual(min('localdisk', { device_path: '/dev/vdb' }).backend, { type: 'localdisk', devicePath: '/dev/vdb', disableGpt: false });
  const oss = min('oss', { endpoint: 'oss-cn.aliyuncs.com', bucket_name: 'b' }).backend;
  assert.ok(oss.type === 'oss' && oss.objectPrefix === '' && oss.accessKeyId === '' && oss.retryLimit === 0);
  const hp = min('http-proxy', { addr: 'http://127.0.0.1:8080' }).backend;
  assert.ok(hp.type === 'http-proxy' && hp.path === '' && hp.timeoutMs === 5000);

  // A present-but-empty prefetch object needs only `enable`; [cache.filecache] without work_dir is ".".
  const p = parse('version = 2\n[backend]\ntype = "localfs"\n[backend.localfs]\ndir = "/d"\n[cache]\ntype = "blobcache"\n[cache.filecache]\n[cache.prefetch]\nenable = true\n').cfg;
  assert.deepEqual(p.cache.prefetch, { ...PREFETCH_OFF, enable: true });
  assert.equal(p.cache.workDir, '.');
  assert.deepEqual(p.prefetch, p.cache.prefetch, 'effective prefetch falls back to the cache prefetch');
  assert.equal(p.cache.maxSizeBytes, undefined);
});

test('registry mirrors and the Damselfly max_size extension', () => {
  const { cfg } = parse({
    version: 2,
    backend: {
      type: 'registry',
      registry: {
        host: 'index.docker.io',
        repo: 'library/busybox',
        mirrors: [
          { host: 'http://127.0.0.1:65001', headers: { 'X-Dragonfly-Registry': 'https://index.docker.io' }, auth_through: true, failure_limit: 3 },
          { host: 'https://mirror.example.com', ping_url: 'https://mirror.example.com/v2', health_check_interval: 10, health_check_pause_elapsed: 60 },
        ],
      },
    },
    cache: { type: 'filecache', filecache: { work_dir: '/c', max_size: 10 * 2 ** 30 } },
  });
  assert.ok(cfg.backend.type === 'registry');
  assert.deepEqual(cfg.backend.mirrors, [
    {
      host: 'http://127.0.0.1:65001',
      pingUrl: '',
      headers: { 'X-Dragonfly-Registry': 'https://index.docker.io' },
      healthCheckIntervalMs: 5000,
      failureLimit: 3,
      healthCheckPauseElapsedMs: 300000,
      authThrough: true,
    },
    {
      host: 'https://mirror.example.com',
      pingUrl: 'https://mirror.example.com/v2',
      headers: {},
      healthCheckIntervalMs: 10000,
      failureLimit: 5,
      healthCheckPauseElapsedMs: 60000,
      authThrough: false,
    },
  ]);
  assert.equal(cfg.cache.maxSizeBytes, 10 * 2 ** 30);
  const proto = parseConfig('{"version":2,"backend":{"type":"registry","registry":{"host":"h","repo":"r","mirrors":[{"host":"http://m","headers":{"__proto__":"x"}}]}}}').backend;
  assert.ok(proto.type === 'registry');
  const headers = proto.mirrors[0]?.headers ?? {};
  assert.equal(Object.getPrototypeOf(headers), Object.prototype, 'a "__proto__" key stays a plain header');
  assert.deepEqual(Object.entries(headers), [['__proto__', 'x']]);
  assert.equal(parse({ version: 2, backend: { type: 'localfs', localfs: { dir: '/d' } }, cache: { type: 'filecache', filecache: { max_size: 0 } } }).cfg.cache.maxSizeBytes, undefined);
});

test('the v1 JSON of §7.7 maps to v2: fs_prefetch to rafs.prefetch and cache.prefetch', () => {
  const { cfg, warnings } = parse(JSON.stringify(SPEC_V1));
  assert.deepEqual(warnings, []);
  assert.equal(cfg.sourceVersion, 1);
  const pf = { ...PREFETCH_OFF, enable: true, prefetchAll: true };
  assert.deepEqual(cfg.rafs, {
    mode: 'direct',
    batchSizeBytes: 1048576,
    validate: false,
    enableXattr: true,
    iostatsFiles: false,
    accessPattern: false,
    latestReadFiles: false,
    prefetch: pf,
  });
  assert.deepEqual(cfg.cache.prefetch, pf);
  assert.deepEqual(cfg.prefetch, pf);
  assert.equal(cfg.cache.type, 'blobcache');
  assert.equal(cfg.cache.workDir, '/var/lib/nydus/cache');
});

test('v1 mapping details: renamed keys, v1 defaults, cache prefetch copied only when enabled', () => {
  const v1 = (extra: object) =>
    parse({ device: { backend: { type: 'localfs', config: { dir: '/b' } } }, mode: 'cached', ...extra }).cfg;
  const a = v1({
    digest_validate: true,
    amplify_io: 0,
    iostats_files: true,
    access_pattern: true,
    latest_read_files: true,
    fs_prefetch: { enable: true, threads_count: 4, merging_size: 131072, bandwidth_rate: 1000, stream_prefetch: true },
  });
  assert.equal(a.rafs.validate, true);
  assert.equal(a.rafs.batchSizeBytes, 0);
  assert.equal(a.rafs.mode, 'cached');
  assert.ok(a.rafs.iostatsFiles && a.rafs.accessPattern && a.rafs.latestReadFiles);
  const pf = { enable: true, threads: 4, batchSizeBytes: 131072, bandwidthLimitBytesPerSec: 1000, prefetchAll: true, streamPrefetch: true };
  assert.deepEqual(a.rafs.prefetch, pf);
  assert.deepEqual(a.cache.prefetch, pf);
  assert.notEqual(a.cache.prefetch, a.rafs.prefetch, 'copies, not shared objects');
  assert.deepEqual(a.cache.type, '', 'no device.cache: no cache');

  const b = v1({ fs_prefetch: {} });
  assert.deepEqual(b.rafs.prefetch, { ...PREFETCH_OFF, prefetchAll: true }, 'v1 enable defaults to false, prefetch_all to true');
  assert.deepEqual(b.cache.prefetch, PREFETCH_OFF, 'disabled fs prefetch is not copied');
  assert.equal(b.rafs.batchSizeBytes, 1048576, 'amplify_io default');
  assert.equal(v1({}).rafs.validate, false);

  const c = parse({
    device: { id: 'd1', backend: { type: 'localfs', config: { dir: '/b' } }, cache: { type: 'fscache', validate: true, config: { work_dir: '/fs' } } },
    mode: 'direct',
  }).cfg;
  assert.equal(c.id, 'd1');
  assert.equal(c.cache.type, 'fscache');
  assert.equal(c.cache.workDir, '/fs');
  assert.equal(c.cache.validate, true);
  const d = parse({ device: { backend: { type: 'localfs', config: { dir: '/b' } }, cache: { type: 'dummycache', config: 42 } }, mode: 'direct' }).cfg;
  assert.equal(d.cache.type, 'dummycache', 'a dummy cache never reads its config');
});

test('registry auth: base64 of user:password, trimmed, and garbage refused without echoing it', () => {
  assert.deepEqual(decodeRegistryAuth('dXNlcjpwYXNz'), { username: 'user', password: 'pass' });
  assert.deepEqual(decodeRegistryAuth(Buffer.from('u:p:w:').toString('base64')), { username: 'u', password: 'p:w:' });
  assert.deepEqual(decodeRegistryAuth(Buffer.from(':').toString('base64')), { username: '', password: '' });
  assert.deepEqual(decodeRegistryAuth(Buffer.from('jöhn:pä').toString('base64')), { username: 'jöhn', password: 'pä' });
  for (const bad of ['base64_encoded', 'dXNlcjpwYXNz=', 'dXNlcjpwYXN', 'dXNl cjpwYXNz', '_-_-', Buffer.from('nocolon').toString('base64'), Buffer.from([0xff, 0x3a, 0x41]).toString('base64')]) {
    assert.throws(() => decodeRegistryAuth(bad), (e: unknown) => e instanceof Error && !e.message.includes(bad), bad);
  }
  const reg = (auth: unknown, extra: object = {}) =>
    parseConfigObject({ version: 2, backend: { type: 'registry', registry: { host: 'h', repo: 'r', auth, ...extra } } }).backend;
  assert.deepEqual(reg('  dXNlcjpwYXNz\n'), reg('dXNlcjpwYXNz'));
  const blank = reg('  ', { registry_token: ' ' });
  assert.ok(blank.type === 'registry' && blank.auth === undefined && blank.registryToken === undefined);
  const nul = reg(null, { registry_token: 'tok' });
  assert.ok(nul.type === 'registry' && nul.auth === undefined && nul.registryToken === 'tok');
  assert.throws(() => reg('c2VjcmV0'), (e: unknown) => e instanceof Error && /^backend\.registry\.auth: .*no colon/.test(e.message) && !e.message.includes('c2VjcmV0'));
});

test('parseConfigObject, configWithoutSecrets and loadConfigFile', async () => {
  const input = structuredClone(SNAPSHOTTER_V1);
  const cfg = parseConfigObject(input);
  assert.deepEqual(input, SNAPSHOTTER_V1, 'the input is not modified');
  assert.deepEqual(cfg, parseConfig(JSON.stringify(SNAPSHOTTER_V1)));
  const clean = configWithoutSecrets(cfg);
  assert.ok(clean.backend.type === 'registry' && clean.backend.auth === undefined);
  assert.ok(cfg.backend.type === 'registry' && cfg.backend.auth !== undefined, 'the original keeps its secrets');
  const s3 = configWithoutSecrets(parseConfigObject({ version: 2, backend: { type: 's3', s3: { endpoint: '', region: 'r', bucket_name: 'b', access_key_id: 'A', access_key_secret: 'S' } } }));
  assert.ok(s3.backend.type === 's3' && s3.backend.accessKeyId === '' && s3.backend.accessKeySecret === '');

  const dir = mkdtempSync(join(tmpdir(), 'damselfly-config-'));
  try {
    const file = join(dir, 'nydusd.toml');
    writeFileSync(file, SPEC_TOML);
    assert.equal((await loadConfigFile(file)).id, 'my_id');
    writeFileSync(file, 'version = 2\n');
    await assert.rejects(loadConfigFile(file), { code: 'E_USAGE', message: `${file}: backend: required (the storage backend of the image blobs)` });
    writeFileSync(file, `# ${'x'.repeat(0x100000)}\n`);
    await assert.rejects(loadConfigFile(file), /configuration: 1048579 bytes, more than the 1048576 allowed/);
    // Not a regular file: refused at once, not waited on (a FIFO without a writer) or read without end.
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    await assert.rejects(loadConfigFile(join(dir, 'fifo')), /fifo: configuration: not a regular file/);
    await assert.rejects(loadConfigFile('/dev/zero'), /not a regular file/);
    await assert.rejects(loadConfigFile(join(dir, 'missing.json')), /missing\.json: cannot read the configuration: ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
