import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { UsageError } from '../../../src/base/index.js';
import { parseConfig, parseConfigObject } from '../../../src/config/index.js';

type Obj = Record<string, unknown>;

const REG = { host: 'r.io', repo: 'a/b' };
/** A valid v2 config with a registry backend; `patch` edits a copy. */
function v2(patch: (c: Obj & { backend: Obj & { registry: Obj } }) => void = () => {}): Obj {
  const c = { version: 2, backend: { type: 'registry', registry: structuredClone(REG) } };
  patch(c);
  return c;
}
/** A valid v2 config with the given backend type and sub-object. */
function backend(type: string, sub: unknown): Obj {
  return { version: 2, backend: { type, [type]: sub } };
}
function withCache(cache: Obj): Obj {
  return { ...v2(), cache };
}
function withRafs(rafs: Obj): Obj {
  return { ...v2(), rafs };
}
function v1(patch: (c: Obj & { device: Obj & { backend: Obj & { config: Obj } } }) => void = () => {}): Obj {
  const c = { device: { backend: { type: 'registry', config: structuredClone(REG) } }, mode: 'direct' };
  patch(c);
  return c;
}

function rejects(input: Obj | string, message: string): void {
  const run = () => (typeof input === 'string' ? parseConfig(input) : parseConfigObject(input));
  assert.throws(run, (e: unknown) => {
    assert.ok(e instanceof UsageError, `not a UsageError: ${String(e)}`);
    assert.equal(e.code, 'E_USAGE');
    assert.equal(e.message, message);
    return true;
  });
  // The same config as JSON text gives the same error.
  if (typeof input !== 'string') assert.throws(() => parseConfig(JSON.stringify(input)), { message });
}

test('top level and version', () => {
  rejects({}, 'version: required (must be 2; a legacy v1 config has "device" and "mode" instead)');
  rejects('', 'version: required (must be 2; a legacy v1 config has "device" and "mode" instead)');
  rejects({ version: 1, device: {}, mode: 'direct' }, 'version: must be 2, got 1');
  rejects({ version: 3 }, 'version: must be 2, got 3');
  rejects({ version: '2' }, 'version: must be an integer 0..4294967295, got a string');
  rejects({ version: 2 }, 'backend: required (the storage backend of the image blobs)');
  rejects({ version: 2, backend: 'registry' }, 'backend: must be an object (a table), got a string');
  rejects({ ...v2(), id: 7 }, 'id: must be a string, got an integer');
  rejects('[]', 'configuration must be an object, got an array');
  rejects('"x"', 'configuration must be an object, got a string');
  rejects('{"version": 2,', 'not valid JSON: ' + jsonError('{"version": 2,'));
  rejects('version = 2\n[backend\n', 'neither JSON nor TOML: Invalid TOML document: illegal character in key (line 2, column 9)');
  assert.throws(() => parseConfig(`# ${'x'.repeat(0x100000)}`), /^UsageError: configuration is too big: 1048578 bytes, the limit is 1048576 \(1 MiB\)$/);
  assert.throws(() => parseConfig('version = 2', { path: '/etc/nydusd.toml' }), { message: '/etc/nydusd.toml: backend: required (the storage backend of the image blobs)' });
  rejects({ ...v2(), external_backends: [{ type: 'x', config: {} }] }, 'external_backends[0].patch: required');
  rejects({ ...v2(), external_backends: [{ patch: { a: 1 }, type: 'x', config: {} }] }, 'external_backends[0].patch.a: must be a string, got an integer');
  rejects({ ...v2(), external_backends: {} }, 'external_backends: must be an array of objects, got an object');
  rejects({ ...v2(), overlay: { upper_dir: '/u' } }, 'overlay.work_dir: required');
});

test('TOML numbers: integers only, range-checked without losing precision', () => {
  const toml = (line: string) => `version = 2\n[backend]\ntype = "registry"\n[backend.registry]\nhost = "h"\nrepo = "r"\n${line}\n`;
  rejects(toml('timeout = 5.0'), 'backend.registry.timeout: must be an integer 0..4294967295, got a float (5)');
  rejects(toml('timeout = 99999999999999999999'), 'backend.registry.timeout: must be an integer 0..4294967295, got 99999999999999999999');
  rejects(toml('retry_limit = -1'), 'backend.registry.retry_limit: must be an integer 0..255, got -1');
  rejects(toml('timeout = 1979-05-27'), 'backend.registry.timeout: must be an integer 0..4294967295, got a date');
  rejects(toml('timeout = "5"'), 'backend.registry.timeout: must be an integer 0..4294967295, got a string');
  rejects('version = 2.0', 'version: must be an integer 0..4294967295, got a float (2)');
  const cfg = parseConfig(toml('timeout = 0x10\nretry_limit = 255\n[[backend.registry.mirrors]]\nhost = "http://m1"\nheaders = { X-A = "1" }\n[[backend.registry.mirrors]]\nhost = "http://m2"\nfailure_limit = 1'));
  assert.ok(cfg.backend.type === 'registry');
  assert.equal(cfg.backend.timeoutMs, 16000);
  assert.equal(cfg.backend.retryLimit, 255);
  assert.deepEqual(cfg.backend.mirrors.map((m) => [m.host, m.headers, m.failureLimit]), [['http://m1', { 'X-A': '1' }, 5], ['http://m2', {}, 1]]);
  rejects(toml('[[backend.registry.mirrors]]\nhost = "http://m"\nheaders = { X-A = 1 }'), 'backend.registry.mirrors[0].headers.X-A: must be a string, got an integer');
});

function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

test('backend: type and the sub-object it names', () => {
  rejects({ version: 2, backend: {} }, 'backend.type: required');
  rejects(backend('ftp', {}), 'backend.type: must be one of localfs, localdisk, registry, oss, s3, http-proxy; got "ftp"');
  rejects({ version: 2, backend: { type: 'registry' } }, 'backend.registry: required when backend.type is "registry"');
  rejects({ version: 2, backend: { type: 'registry', registry: null } }, 'backend.registry: required when backend.type is "registry"');
  rejects({ version: 2, backend: { type: 'http-proxy', http_proxy: { addr: 'http://x' } } }, 'backend.http-proxy: required when backend.type is "http-proxy"');
  rejects({ version: 2, backend: { type: 'registry', registry: [] } }, 'backend.registry: must be an object (a table), got an array');
  // Sub-objects not named by `type` are still read (types, required keys), but not validated further.
  rejects(v2((c) => (c.backend['oss'] = {})), 'backend.oss.endpoint: required');
  rejects(v2((c) => (c.backend['localfs'] = { dir: 5 })), 'backend.localfs.dir: must be a string, got an integer');
  parseConfigObject(v2((c) => (c.backend['oss'] = { endpoint: '', bucket_name: '', proxy: { url: 'localhost:6789' } })));
  parseConfigObject(v2((c) => (c.backend['localfs'] = {})));
});

test('registry: required keys, host, scheme, auth, numbers', () => {
  const reg = (r: Obj) => backend('registry', r);
  rejects(reg({ repo: 'a' }), 'backend.registry.host: required');
  rejects(reg({ host: '', repo: 'a' }), 'backend.registry.host: required (must not be empty)');
  rejects(reg({ host: 'h' }), 'backend.registry.repo: required');
  rejects(reg({ host: 'h', repo: '' }), 'backend.registry.repo: required (must not be empty)');
  rejects(reg({ host: 'https://r.io', repo: 'a' }), 'backend.registry.host: must be host[:port] without a scheme or path, got "https://r.io"');
  rejects(reg({ host: 'r.io/v2', repo: 'a' }), 'backend.registry.host: must be host[:port] without a scheme or path, got "r.io/v2"');
  rejects(reg({ ...REG, scheme: 'ftp' }), 'backend.registry.scheme: must be "http" or "https", got "ftp"');
  rejects(reg({ ...REG, blob_url_scheme: 'gopher' }), 'backend.registry.blob_url_scheme: must be "http", "https" or empty, got "gopher"');
  rejects(reg({ ...REG, blob_redirected_host: 'http://x' }), 'backend.registry.blob_redirected_host: must be host[:port] without a scheme or path, got "http://x"');
  rejects(reg({ ...REG, auth: 'base64_encoded' }), 'backend.registry.auth: must be base64 of "username:password" (standard alphabet, padded)');
  rejects(reg({ ...REG, auth: Buffer.from('user').toString('base64') }), 'backend.registry.auth: the decoded value must be "username:password" (no colon found)');
  rejects(reg({ ...REG, auth: Buffer.from([0xc3, 0x28, 0x3a]).toString('base64') }), 'backend.registry.auth: the base64 value does not decode to UTF-8 text');
  rejects(reg({ ...REG, auth: 5 }), 'backend.registry.auth: must be a string, got an integer');
  rejects(reg({ ...REG, timeout: -1 }), 'backend.registry.timeout: must be an integer 0..4294967295, got -1');
  rejects(reg({ ...REG, timeout: 1.5 }), 'backend.registry.timeout: must be an integer 0..4294967295, got 1.5');
  rejects(reg({ ...REG, connect_timeout: '5' }), 'backend.registry.connect_timeout: must be an integer 0..4294967295, got a string');
  rejects(reg({ ...REG, retry_limit: 256 }), 'backend.registry.retry_limit: must be an integer 0..255, got 256');
  rejects(reg({ ...REG, skip_verify: 'yes' }), 'backend.registry.skip_verify: must be true or false, got a string');
  rejects(reg({ ...REG, ca_cert_files: '/ca.pem' }), 'backend.registry.ca_cert_files: must be an array of strings, got a string');
  rejects(reg({ ...REG, ca_cert_files: ['/a', 1] }), 'backend.registry.ca_cert_files[1]: must be a string, got an integer');
  const empty = parseConfigObject(reg({ ...REG, scheme: '' })).backend;
  assert.ok(empty.type === 'registry' && empty.scheme === 'https', 'an empty scheme is https, as in nydus');
  parseConfigObject(reg({ host: '[::1]:5000', repo: 'a', scheme: 'http' }));
});

test('proxy and mirrors', () => {
  const proxy = (p: unknown) => v2((c) => (c.backend.registry['proxy'] = p));
  rejects(proxy({ url: 'localhost:6789' }), 'backend.registry.proxy.url: must be an http:// or https:// URL, got "localhost:6789"');
  rejects(proxy({ url: 'ftp://p' }), 'backend.registry.proxy.url: must be an http:// or https:// URL, got "ftp://p"');
  rejects(proxy({ url: 'http://p', ping_url: 'p/ping' }), 'backend.registry.proxy.ping_url: must be an http:// or https:// URL, got "p/ping"');
  rejects(proxy({ fallback: 1 }), 'backend.registry.proxy.fallback: must be true or false, got an integer');
  rejects(proxy({ check_interval: -5 }), 'backend.registry.proxy.check_interval: must be an integer 0..9007199254740, got -5');
  rejects(proxy(true), 'backend.registry.proxy: must be an object (a table), got a boolean');
  const mirrors = (m: unknown) => v2((c) => (c.backend.registry['mirrors'] = m));
  rejects(mirrors([{}]), 'backend.registry.mirrors[0].host: required');
  rejects(mirrors([{ host: 'http://m' }, { host: 'mirror.local:5000' }]), 'backend.registry.mirrors[1].host: must be an http:// or https:// URL, got "mirror.local:5000"');
  rejects(mirrors([{ host: 'http://m', ping_url: 'x' }]), 'backend.registry.mirrors[0].ping_url: must be an http:// or https:// URL, got "x"');
  rejects(mirrors([{ host: 'http://m', headers: { a: true } }]), 'backend.registry.mirrors[0].headers.a: must be a string, got a boolean');
  rejects(mirrors([{ host: 'http://m', failure_limit: 300 }]), 'backend.registry.mirrors[0].failure_limit: must be an integer 0..255, got 300');
  rejects(mirrors({ host: 'http://m' }), 'backend.registry.mirrors: must be an array of objects, got an object');
  rejects(mirrors(['http://m']), 'backend.registry.mirrors[0]: must be an object, got a string');
});

test('s3, oss, localfs, localdisk', () => {
  rejects(backend('s3', { region: 'r', bucket_name: 'b' }), 'backend.s3.endpoint: required');
  rejects(backend('s3', { endpoint: '', bucket_name: 'b' }), 'backend.s3.region: required');
  rejects(backend('s3', { endpoint: '', region: '', bucket_name: 'b' }), 'backend.s3.region: required (must not be empty)');
  rejects(backend('s3', { endpoint: '', region: 'r' }), 'backend.s3.bucket_name: required');
  rejects(backend('s3', { endpoint: '', region: 'r', bucket_name: '' }), 'backend.s3.bucket_name: required (must not be empty)');
  rejects(backend('s3', { endpoint: '', region: 'r', bucket_name: 'b', force_path_style: 'no' }), 'backend.s3.force_path_style: must be true or false, got a string');
  rejects(backend('oss', { endpoint: '', bucket_name: 'b' }), 'backend.oss.endpoint: required (must not be empty)');
  rejects(backend('oss', { endpoint: 'e', bucket_name: '' }), 'backend.oss.bucket_name: required (must not be empty)');
  rejects(backend('oss', { endpoint: 'e' }), 'backend.oss.bucket_name: required');
  rejects(backend('localfs', {}), 'backend.localfs.dir: required: set dir or blob_file');
  rejects(backend('localfs', { dir: '', blob_file: '' }), 'backend.localfs.dir: required: set dir or blob_file');
  rejects(backend('localdisk', {}), 'backend.localdisk.device_path: required (must not be empty)');
  rejects(backend('localdisk', { device_path: '/dev/vdb', disable_gpt: 0 }), 'backend.localdisk.disable_gpt: must be true or false, got an integer');
});

test('http-proxy: addr is an http(s) URL or an existing Unix socket', async () => {
  rejects(backend('http-proxy', {}), 'backend.http-proxy.addr: required');
  rejects(backend('http-proxy', { addr: '' }), 'backend.http-proxy.addr: required (must not be empty)');
  const bad = (addr: string) => `backend.http-proxy.addr: must be an http:// or https:// URL or the absolute path of an existing Unix socket, got "${addr}"`;
  rejects(backend('http-proxy', { addr: 'ftp://p' }), bad('ftp://p'));
  rejects(backend('http-proxy', { addr: 'run/p.sock' }), bad('run/p.sock'));
  rejects(backend('http-proxy', { addr: 'http://' }), 'backend.http-proxy.addr: must be an http:// or https:// URL, got "http://"');
  const dir = mkdtempSync(join(tmpdir(), 'damselfly-config-'));
  const sock = join(dir, 'proxy.sock');
  rejects(backend('http-proxy', { addr: sock }), bad(sock));
  const file = join(dir, 'plain');
  writeFileSync(file, '');
  rejects(backend('http-proxy', { addr: file }), bad(file));
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  try {
    const b = parseConfigObject(backend('http-proxy', { addr: sock, path: '/ignored', retry_limit: 1 })).backend;
    assert.ok(b.type === 'http-proxy' && b.addr === sock && b.retryLimit === 1);
  } finally {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('cache: type, the sub-object it needs, work_dir, encryption key', () => {
  rejects(withCache({ type: 'memcache' }), 'cache.type: must be one of blobcache, filecache, fscache, dummycache or "", got "memcache"');
  rejects(withCache({ type: 'blobcache' }), 'cache.filecache: required when cache.type is "blobcache"');
  rejects(withCache({ type: 'filecache', fscache: { work_dir: '/c' } }), 'cache.filecache: required when cache.type is "filecache"');
  rejects(withCache({ type: 'fscache', filecache: { work_dir: '/c' } }), 'cache.fscache: required when cache.type is "fscache"');
  rejects(withCache({ type: 'filecache', filecache: { work_dir: '' } }), 'cache.filecache.work_dir: must not be empty');
  rejects(withCache({ type: 'fscache', fscache: { work_dir: '' } }), 'cache.fscache.work_dir: must not be empty');
  rejects(withCache({ type: 'filecache', filecache: { work_dir: '/c', encryption_key: 'abc' } }), 'cache.filecache.encryption_key: must be 64 hexadecimal digits (32 bytes)');
  // An encrypted cache needs a key of two different halves; convergent encryption is a kind of it.
  const key = 'fc4a7db5614afc2f400e9478bebed1aefdbc9d7cd03210b84f144683a7a6fd1a';
  rejects(withCache({ type: 'filecache', filecache: { work_dir: '/c', enable_encryption: true } }), 'cache.filecache.encryption_key: required with enable_encryption (64 hexadecimal digits)');
  rejects(withCache({ type: 'filecache', filecache: { work_dir: '/c', enable_encryption: true, encryption_key: key.slice(0, 32).repeat(2) } }), 'cache.filecache.encryption_key: its two halves (the two AES-128 keys of XTS) must differ');
  rejects(withCache({ type: 'blobcache', filecache: { work_dir: '/c', enable_convergent_encryption: true, encryption_key: key } }), 'cache.filecache.enable_convergent_encryption: needs enable_encryption');
  const enc = parseConfigObject(withCache({ type: 'filecache', filecache: { work_dir: '/c', enable_encryption: true, enable_convergent_encryption: true, encryption_key: key } }));
  assert.deepEqual([enc.cache.enableEncryption, enc.cache.enableConvergentEncryption, enc.cache.encryptionKey], [true, true, key]);
  rejects(withCache({ type: 'filecache', filecache: { work_dir: '/c', max_size: -1 } }), 'cache.filecache.max_size: must be an integer 0..9007199254740991, got -1');
  rejects(withCache({ type: 'filecache', filecache: 'c' }), 'cache.filecache: must be an object (a table), got a string');
  rejects(withCache({ validate: 'true' }), 'cache.validate: must be true or false, got a string');
  parseConfigObject(withCache({ type: 'dummycache', filecache: { work_dir: '' } }));
});

test('prefetch: enable is required in a prefetch object; threads and batch_size limits when enabled', () => {
  for (const where of ['cache', 'rafs'] as const) {
    const pf = (p: Obj) => (where === 'cache' ? withCache({ prefetch: p }) : withRafs({ prefetch: p }));
    rejects(pf({}), `${where}.prefetch.enable: required`);
    rejects(pf({ threads: 4 }), `${where}.prefetch.enable: required`);
    rejects(pf({ enable: 'yes' }), `${where}.prefetch.enable: must be true or false, got a string`);
    rejects(pf({ enable: true, threads: 0 }), `${where}.prefetch.threads: must be 1..1024 when prefetch is enabled, got 0`);
    rejects(pf({ enable: true, threads: 1025 }), `${where}.prefetch.threads: must be 1..1024 when prefetch is enabled, got 1025`);
    rejects(pf({ enable: true, batch_size: 0x1000_0001 }), `${where}.prefetch.batch_size: must be at most 268435456 (0x10000000), got 268435457`);
    rejects(pf({ enable: false, bandwidth_limit: 2 ** 32 }), `${where}.prefetch.bandwidth_limit: must be an integer 0..4294967295, got 4294967296`);
    // Limits apply only when enabled (as in nydus); the edges are accepted.
    parseConfigObject(pf({ enable: false, threads: 0, batch_size: 0x2000_0000 }));
    parseConfigObject(pf({ enable: true, threads: 1024, batch_size: 0x1000_0000 }));
    parseConfigObject(pf({ enable: true, threads: 1, batch_size: 0 }));
  }
});

test('rafs: mode and batch_size', () => {
  rejects(withRafs({ mode: 'lazy' }), 'rafs.mode: must be "direct" or "cached", got "lazy"');
  rejects(withRafs({ batch_size: 0x1000_0001 }), 'rafs.batch_size: must be at most 268435456 (0x10000000), got 268435457');
  rejects(withRafs({ enable_xattr: null }), 'rafs.enable_xattr: must be true or false, got null');
  rejects({ ...v2(), rafs: 1 }, 'rafs: must be an object (a table), got an integer');
});

test('legacy v1: required keys and validation name the v1 paths', () => {
  rejects({ mode: 'direct' }, 'device: required');
  rejects(v1((c) => delete (c as Obj)['mode']), 'mode: required');
  rejects(v1((c) => ((c as Obj)['mode'] = 'fast')), 'mode: must be "direct" or "cached", got "fast"');
  rejects({ device: {}, mode: 'direct' }, 'device.backend: required');
  rejects({ device: { backend: { config: REG } }, mode: 'direct' }, 'device.backend.type: required');
  rejects({ device: { backend: { type: 'registry' } }, mode: 'direct' }, 'device.backend.config: required (the registry backend settings)');
  rejects({ device: { backend: { type: 'nfs', config: {} } }, mode: 'direct' }, 'device.backend.type: must be one of localfs, localdisk, registry, oss, s3, http-proxy; got "nfs"');
  rejects(v1((c) => delete c.device.backend.config['host']), 'device.backend.config.host: required');
  rejects(v1((c) => (c.device.backend.config['proxy'] = { url: 'p:1' })), 'device.backend.config.proxy.url: must be an http:// or https:// URL, got "p:1"');
  rejects(v1((c) => (c.device.backend.config['mirrors'] = [{ host: 'm' }])), 'device.backend.config.mirrors[0].host: must be an http:// or https:// URL, got "m"');
  rejects(v1((c) => (c.device.backend.config['auth'] = '!!')), 'device.backend.config.auth: must be base64 of "username:password" (standard alphabet, padded)');
  rejects(v1((c) => (c.device['cache'] = { type: 'blobcache' })), 'device.cache.config: required when device.cache.type is "blobcache"');
  rejects(v1((c) => (c.device['cache'] = { type: 'fscache', config: null })), 'device.cache.config: required when device.cache.type is "fscache"');
  rejects(v1((c) => (c.device['cache'] = { type: 'blobcache', config: { work_dir: '' } })), 'device.cache.config.work_dir: must not be empty');
  rejects(v1((c) => (c.device['cache'] = { type: 'lru' })), 'device.cache.type: must be one of blobcache, filecache, fscache, dummycache or "", got "lru"');
  rejects(v1((c) => ((c as Obj)['fs_prefetch'] = { enable: true, threads_count: 0 })), 'fs_prefetch.threads_count: must be 1..1024 when prefetch is enabled, got 0');
  rejects(v1((c) => ((c as Obj)['fs_prefetch'] = { enable: true, merging_size: 0x1000_0001 })), 'fs_prefetch.merging_size: must be at most 268435456 (0x10000000), got 268435457');
  rejects(v1((c) => ((c as Obj)['fs_prefetch'] = { bandwidth_rate: -1 })), 'fs_prefetch.bandwidth_rate: must be an integer 0..4294967295, got -1');
  rejects(v1((c) => ((c as Obj)['amplify_io'] = 0x1000_0001)), 'amplify_io: must be at most 268435456 (0x10000000), got 268435457');
  rejects(v1((c) => ((c as Obj)['digest_validate'] = 'false')), 'digest_validate: must be true or false, got a string');
  rejects(v1((c) => (c.device['external_backends'] = [{ patch: {}, type: 't' }])), 'device.external_backends[0].config: required');
  // A v1 config inside TOML is not a thing: TOML is always v2.
  rejects('mode = "direct"\n[device]\n', 'version: required (must be 2; a legacy v1 config has "device" and "mode" instead)');
});
