/**
 * `backend` (rafs-format.md §7.3): the storage backend sub-objects, their proxy and mirrors.
 *
 * As in nydus, every backend sub-object present is read (types and required keys are checked,
 * so `backend.oss = {}` is an error even when `type` is "registry"), but only the one named by
 * `type` is validated further (non-empty host, URLs, base64 auth) and returned.
 */
import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { UsageError } from '../base/index.js';
import type { Section } from './reader.js';
import { SECONDS_MAX, U32_MAX, U8_MAX } from './reader.js';
import type { Place } from './schema.js';
import {
  BACKEND_TYPES,
  DEFAULT_CHECK_INTERVAL_SECS,
  DEFAULT_CHECK_PAUSE_ELAPSED_SECS,
  DEFAULT_HTTP_TIMEOUT_SECS,
  DEFAULT_MIRROR_FAILURE_LIMIT,
  DEFAULT_S3_ENDPOINT,
  type BackendConfig,
  type BackendType,
  type HttpBackendOptions,
  type HttpScheme,
  type MirrorConfig,
  type ProxyConfig,
  type RegistryAuth,
} from './types.js';

/** Where the proxy and mirror sections of a backend live in the current dialect. */
export interface BackendPlaces {
  proxy: Place;
  mirror: Place;
}

export function isBackendType(t: string): t is BackendType {
  return (BACKEND_TYPES as readonly string[]).includes(t);
}

/** Reads one backend object of the given type; `selected` enables the semantic checks. */
export function readBackend(type: BackendType, sec: Section, places: BackendPlaces, selected: boolean): BackendConfig {
  const cfg = READERS[type](sec, places, selected);
  sec.warnUnknown();
  return cfg;
}

type Reader = (sec: Section, places: BackendPlaces, selected: boolean) => BackendConfig;

const READERS: Record<BackendType, Reader> = {
  localfs(sec, _places, selected) {
    const cfg = { type: 'localfs' as const, blobFile: sec.string('blob_file', ''), dir: sec.string('dir', ''), altDirs: sec.strings('alt_dirs') };
    if (selected && cfg.blobFile === '' && cfg.dir === '') sec.fail('dir', 'required: set dir or blob_file');
    return cfg;
  },
  localdisk(sec, _places, selected) {
    const cfg = { type: 'localdisk' as const, devicePath: sec.string('device_path', ''), disableGpt: sec.bool('disable_gpt', false) };
    if (selected && cfg.devicePath === '') sec.fail('device_path', 'required (must not be empty)');
    return cfg;
  },
  registry(sec, places, selected) {
    const scheme = readScheme(sec, selected);
    const host = sec.string('host');
    const repo = sec.string('repo');
    const authText = trimmed(sec.optString('auth'));
    const registryToken = trimmed(sec.optString('registry_token'));
    const cfg = {
      type: 'registry' as const,
      scheme,
      host,
      repo,
      ...(authText !== undefined && selected ? { auth: decodeRegistryAuth(authText, sec) } : {}),
      ...(registryToken !== undefined ? { registryToken } : {}),
      blobUrlScheme: sec.string('blob_url_scheme', ''),
      blobRedirectedHost: sec.string('blob_redirected_host', ''),
      ...readHttpOptions(sec, places, selected),
      mirrors: sec.children('mirrors', places.mirror).map((m) => readMirror(m, selected)),
    };
    if (selected) {
      checkHost(sec, 'host', host);
      if (repo === '') sec.fail('repo', 'required (must not be empty)');
      if (cfg.blobUrlScheme !== '' && cfg.blobUrlScheme !== 'http' && cfg.blobUrlScheme !== 'https') {
        sec.fail('blob_url_scheme', `must be "http", "https" or empty, got "${cfg.blobUrlScheme}"`);
      }
      if (cfg.blobRedirectedHost !== '') checkHost(sec, 'blob_redirected_host', cfg.blobRedirectedHost);
    }
    return cfg;
  },
  oss(sec, places, selected) {
    const cfg = { type: 'oss' as const, scheme: readScheme(sec, selected), ...readObjectStore(sec), ...readHttpOptions(sec, places, selected) };
    if (selected) {
      if (cfg.endpoint === '') sec.fail('endpoint', 'required (must not be empty)');
      if (cfg.bucketName === '') sec.fail('bucket_name', 'required (must not be empty)');
    }
    return cfg;
  },
  s3(sec, places, selected) {
    const scheme = readScheme(sec, selected);
    const store = readObjectStore(sec);
    const region = sec.string('region');
    const cfg = {
      type: 's3' as const,
      scheme,
      ...store,
      endpoint: store.endpoint === '' ? DEFAULT_S3_ENDPOINT : store.endpoint,
      region,
      forcePathStyle: sec.bool('force_path_style', true),
      ...readHttpOptions(sec, places, selected),
    };
    if (selected) {
      if (region === '') sec.fail('region', 'required (must not be empty)');
      if (cfg.bucketName === '') sec.fail('bucket_name', 'required (must not be empty)');
    }
    return cfg;
  },
  'http-proxy'(sec, places, selected) {
    const cfg = { type: 'http-proxy' as const, addr: sec.string('addr'), path: sec.string('path', ''), ...readHttpOptions(sec, places, selected) };
    if (selected) checkHttpProxyAddr(sec, cfg.addr);
    return cfg;
  },
};

function readObjectStore(sec: Section) {
  return {
    endpoint: sec.string('endpoint'),
    bucketName: sec.string('bucket_name'),
    objectPrefix: sec.string('object_prefix', ''),
    accessKeyId: sec.string('access_key_id', ''),
    accessKeySecret: sec.string('access_key_secret', ''),
  };
}

/** `scheme`, default "https"; '' also means https (nydus treats anything but "http" as https). */
function readScheme(sec: Section, selected: boolean): HttpScheme {
  const s = sec.string('scheme', 'https');
  if (s === 'http' || s === 'https') return s;
  if (s === '' || !selected) return 'https';
  return sec.fail('scheme', `must be "http" or "https", got "${s}"`);
}

function readHttpOptions(sec: Section, places: BackendPlaces, selected: boolean): HttpBackendOptions {
  const proxySec = sec.child('proxy', places.proxy);
  return {
    skipVerify: sec.bool('skip_verify', false),
    caCertFiles: sec.strings('ca_cert_files'),
    timeoutMs: sec.int('timeout', U32_MAX, DEFAULT_HTTP_TIMEOUT_SECS) * 1000,
    connectTimeoutMs: sec.int('connect_timeout', U32_MAX, DEFAULT_HTTP_TIMEOUT_SECS) * 1000,
    retryLimit: sec.int('retry_limit', U8_MAX, 0),
    proxy: proxySec === undefined ? defaultProxy() : readProxy(proxySec, selected),
  };
}

export function defaultProxy(): ProxyConfig {
  return {
    url: '',
    pingUrl: '',
    fallback: true,
    checkIntervalMs: DEFAULT_CHECK_INTERVAL_SECS * 1000,
    useHttp: false,
    checkPauseElapsedMs: DEFAULT_CHECK_PAUSE_ELAPSED_SECS * 1000,
    dragonflySchedulerEndpoint: '',
  };
}

function readProxy(sec: Section, selected: boolean): ProxyConfig {
  const cfg: ProxyConfig = {
    url: sec.string('url', ''),
    pingUrl: sec.string('ping_url', ''),
    fallback: sec.bool('fallback', true),
    checkIntervalMs: sec.int('check_interval', SECONDS_MAX, DEFAULT_CHECK_INTERVAL_SECS) * 1000,
    useHttp: sec.bool('use_http', false),
    checkPauseElapsedMs: sec.int('check_pause_elapsed', SECONDS_MAX, DEFAULT_CHECK_PAUSE_ELAPSED_SECS) * 1000,
    dragonflySchedulerEndpoint: sec.string('dragonfly_scheduler_endpoint', ''),
  };
  if (selected) {
    if (cfg.url !== '') checkHttpUrl(sec, 'url', cfg.url);
    if (cfg.pingUrl !== '') checkHttpUrl(sec, 'ping_url', cfg.pingUrl);
  }
  sec.warnUnknown();
  return cfg;
}

function readMirror(sec: Section, selected: boolean): MirrorConfig {
  const cfg: MirrorConfig = {
    host: sec.string('host'),
    pingUrl: sec.string('ping_url', ''),
    headers: sec.stringMap('headers'),
    healthCheckIntervalMs: sec.int('health_check_interval', SECONDS_MAX, DEFAULT_CHECK_INTERVAL_SECS) * 1000,
    failureLimit: sec.int('failure_limit', U8_MAX, DEFAULT_MIRROR_FAILURE_LIMIT),
    healthCheckPauseElapsedMs: sec.int('health_check_pause_elapsed', SECONDS_MAX, DEFAULT_CHECK_PAUSE_ELAPSED_SECS) * 1000,
    authThrough: sec.bool('auth_through', false),
  };
  if (selected) {
    checkHttpUrl(sec, 'host', cfg.host);
    if (cfg.pingUrl !== '') checkHttpUrl(sec, 'ping_url', cfg.pingUrl);
  }
  sec.warnUnknown();
  return cfg;
}

/** Trims an optional secret; empty or blank gives undefined (nydus `registry.rs:trim`). */
function trimmed(s: string | undefined): string | undefined {
  const t = s?.trim();
  return t === undefined || t === '' ? undefined : t;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Decodes a registry `auth` value: standard, padded base64 of UTF-8 "username:password" (the
 * password may contain ':'). The value itself never appears in error messages.
 */
export function decodeRegistryAuth(auth: string, sec?: Section): RegistryAuth {
  const fail = (msg: string): never => {
    if (sec !== undefined) sec.fail('auth', msg);
    throw new UsageError(`auth: ${msg}`);
  };
  if (!BASE64.test(auth)) fail('must be base64 of "username:password" (standard alphabet, padded)');
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(auth, 'base64'));
  } catch {
    fail('the base64 value does not decode to UTF-8 text');
  }
  const colon = text.indexOf(':');
  if (colon < 0) fail('the decoded value must be "username:password" (no colon found)');
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

function checkHost(sec: Section, key: string, host: string): void {
  if (host === '') sec.fail(key, 'required (must not be empty)');
  let ok = !/[\s/\\?#@]/.test(host);
  if (ok) {
    try {
      ok = new URL(`https://${host}`).host !== '';
    } catch {
      ok = false;
    }
  }
  if (!ok) sec.fail(key, `must be host[:port] without a scheme or path, got "${host}"`);
}

function checkHttpUrl(sec: Section, key: string, value: string): void {
  let ok = false;
  try {
    const u = new URL(value);
    ok = (u.protocol === 'http:' || u.protocol === 'https:') && u.host !== '';
  } catch {
    ok = false;
  }
  if (!ok) sec.fail(key, `must be an http:// or https:// URL, got "${value}"`);
}

function checkHttpProxyAddr(sec: Section, addr: string): void {
  if (addr === '') sec.fail('addr', 'required (must not be empty)');
  if (addr.startsWith('http://') || addr.startsWith('https://')) return checkHttpUrl(sec, 'addr', addr);
  let exists = false;
  try {
    exists = isAbsolute(addr) && statSync(addr).isSocket();
  } catch {
    exists = false;
  }
  if (!exists) sec.fail('addr', `must be an http:// or https:// URL or the absolute path of an existing Unix socket, got "${addr}"`);
}
