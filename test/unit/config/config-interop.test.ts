import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../../src/config/index.js';
import { SNAPSHOTTER_V1, SPEC_V1, parse } from './fixtures.js';

test("nydus-snapshotter's v1 config: registry with auth and mirrors, blobcache, fs_prefetch", () => {
  const { cfg, warnings } = parse(JSON.stringify(SNAPSHOTTER_V1));
  assert.deepEqual(warnings, [], 'readahead is silently ignored');
  assert.ok(cfg.backend.type === 'registry');
  assert.deepEqual(cfg.backend.auth, { username: 'robot$ci', password: 's3cr:et' });
  assert.equal(cfg.backend.host, 'ghcr.io');
  assert.equal(cfg.backend.retryLimit, 2);
  assert.equal(cfg.backend.proxy.fallback, false);
  assert.equal(cfg.backend.proxy.url, '');
  assert.equal(cfg.backend.mirrors.length, 1);
  assert.equal(cfg.backend.mirrors[0]?.pingUrl, 'http://127.0.0.1:40901/server/ping');
  assert.equal(cfg.cache.workDir, '/var/lib/containerd-nydus/cache');
  assert.deepEqual(cfg.rafs.prefetch, { enable: true, threads: 2, batchSizeBytes: 0, bandwidthLimitBytesPerSec: 0, prefetchAll: true, streamPrefetch: false });
  assert.deepEqual(cfg.cache.prefetch, cfg.rafs.prefetch);
  assert.equal(cfg.rafs.enableXattr, true);
});

test("what Kata passes: POST /api/v1/mount's config string (virtio-fs-interop.md §2.3)", () => {
  // Kata's tests/integration/nydus/nydusd-config.json is a template: the snapshotter fills in host/repo.
  const template = {
    device: {
      backend: { type: 'registry', config: { scheme: 'https', timeout: 5, connect_timeout: 5, retry_limit: 2 } },
      cache: { type: 'blobcache', config: { work_dir: '/var/lib/nydus/cache' } },
    },
    mode: 'direct',
    digest_validate: false,
    iostats_files: false,
    enable_xattr: true,
    fs_prefetch: { enable: true, threads_count: 2 },
  };
  assert.throws(() => parseConfig(JSON.stringify(template)), /^UsageError: device\.backend\.config\.host: required$/);
  const filled = structuredClone(template) as typeof template & { device: { id: string } } & Record<string, unknown>;
  Object.assign(filled.device.backend.config, { host: 'registry.example.com:5000', repo: 'kata/busybox', auth: 'dXNlcjpwYXNz', proxy: { url: 'http://127.0.0.1:65001' } });
  filled.device.id = '/42';
  filled['amplify_io'] = 524288;
  filled['id_mapping'] = [0, 1000, 65536];
  const body = JSON.stringify({ fs_type: 'rafs', source: '/var/lib/containerd-nydus/snapshots/42/fs/image/image.boot', config: JSON.stringify(filled) });
  const { cfg, warnings } = parse((JSON.parse(body) as { config: string }).config);
  assert.deepEqual(warnings, []);
  assert.equal(cfg.id, '/42');
  assert.ok(cfg.backend.type === 'registry');
  assert.equal(cfg.backend.host, 'registry.example.com:5000');
  assert.equal(cfg.backend.proxy.url, 'http://127.0.0.1:65001');
  assert.equal(cfg.rafs.batchSizeBytes, 524288);
  assert.deepEqual(cfg.prefetch, { enable: true, threads: 2, batchSizeBytes: 1048576, bandwidthLimitBytesPerSec: 0, prefetchAll: true, streamPrefetch: false });

  // The snapshotter's localfs template.
  const local = parse('{"device":{"backend":{"type":"localfs","config":{"dir":"/tmp/"}},"cache":{"type":"blobcache","config":{"work_dir":"/var/lib/nydus/cache"}}},"mode":"direct","digest_validate":false,"iostats_files":false,"enable_xattr":true,"fs_prefetch":{"enable":true,"threads_count":2}}').cfg;
  assert.deepEqual(local.backend, { type: 'localfs', dir: '/tmp/', altDirs: [], blobFile: '' });
});

// nydus misc/configs/nydusd-config-v2.toml, condensed: it has a typo section and misplaced keys.
const MISC_TOML = `
version = 2
id = "my_id"
[backend]
type = "localfs"
[backend.localfs]
blob_file = "/tmp/nydus.blob.data"
dir = "/tmp"
alt_dirs = ["/var/nydus/cache"]
[backend.oss]
scheme = "http"
endpoint = "my_endpoint"
bucket_name = "my_bucket_name"
[backend.oss.proxy]
url = "localhost:6789"
ping_url = "localhost:6789/ping"
[backend.registy]
host = "my.registry.com"
repo = "nydus"
auth = "base64_encoded"
[cache]
type = "filecache"
compressed = true
validate = true
enable_encryption = true
enable_convergent_encryption = true
encryption_key = "fc4a7db5614afc2f400e9478bebed1aefdbc9d7cd03210b84f144683a7a6fd1a"
[cache.filecache]
work_dir = "."
[cache.fscache]
work_dir = "."
[cache.prefetch]
enable = true
threads = 8
batch_size = 1000000
bandwidth_limit = 10000000
[rafs]
mode = "direct"
batch_size = 1000000
[rafs.prefetch]
enable = true
threads_count = 4
`;

test("the misc-config traps of §7.9: a typo section and keys in the wrong section are ignored, with warnings", () => {
  const { cfg, warnings } = parse(MISC_TOML);
  assert.equal(cfg.backend.type, 'localfs');
  assert.equal(cfg.cache.enableEncryption, false, 'enable_encryption under [cache] is ignored');
  assert.equal(cfg.cache.encryptionKey, '');
  assert.equal(cfg.cache.validate, true);
  assert.equal(cfg.cache.prefetch.bandwidthLimitBytesPerSec, 10000000);
  assert.equal(cfg.rafs.prefetch.threads, 8, 'the v1 name threads_count is not read in v2');
  assert.deepEqual(warnings, [
    'backend.registy: unknown key ignored (did you mean backend.registry?)',
    'cache.enable_encryption: unknown key ignored (it belongs in cache.filecache)',
    'cache.enable_convergent_encryption: unknown key ignored (it belongs in cache.filecache)',
    'cache.encryption_key: unknown key ignored (it belongs in cache.filecache)',
    'rafs.prefetch.threads_count: unknown key ignored (the v2 name is threads)',
  ]);
  // The same typo with type = "registry" leaves no registry section at all.
  const typo = MISC_TOML.replace('type = "localfs"', 'type = "registry"');
  assert.throws(() => parseConfig(typo), /backend\.registry: required when backend\.type is "registry"/);
  // Without onWarning nothing is reported and unknown keys are still ignored.
  assert.equal(parseConfig(MISC_TOML).backend.type, 'localfs');
});

test('warnings name the other v1/v2 spellings and keys placed one level off', () => {
  const w = parse({
    version: 2,
    mode: 'direct',
    backend: { type: 'localfs', localfs: { dir: '/d', dri: 'x' }, http_proxy: {} },
    cache: { type: '', config: {} },
    rafs: { enable: true, amplify_io: 0 },
    unrelated_key: 1,
  }).warnings;
  assert.deepEqual(w, [
    'backend.localfs.dri: unknown key ignored (did you mean backend.localfs.dir?)',
    'backend.http_proxy: unknown key ignored (the key is "http-proxy", with a hyphen)',
    'cache.config: unknown key ignored (a v1 key; in v2 it is cache.filecache or cache.fscache)',
    'rafs.enable: unknown key ignored (it belongs in cache.prefetch or rafs.prefetch)',
    'rafs.amplify_io: unknown key ignored (the v2 name is batch_size)',
    'mode: unknown key ignored (a v1 key; in v2 it is rafs.mode)',
  ]);
  const v1 = parse({ ...SPEC_V1, fs_prefetch: { enable: false, threads: 2 }, device: { ...SPEC_V1.device, cache: { type: '', prefetch_config: {} } } }).warnings;
  assert.deepEqual(v1, [
    'device.cache.prefetch_config: unknown key ignored (nydus never reads it in a v1 config; use fs_prefetch)',
    'fs_prefetch.threads: unknown key ignored (the v1 name is threads_count)',
  ]);
});
