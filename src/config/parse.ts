/**
 * Entry points: text → `DaemonConfig` (rafs-format.md §7.1). A text is read as JSON config v2,
 * else TOML config v2, else legacy v1 JSON; an already-parsed object is v2 when it has a
 * `version` key and v1 otherwise (v1 has `device` and `mode`). The result is validated.
 */
import { parse as parseToml, TomlError } from 'smol-toml';
import { UsageError, errorMessage, readRegularFile } from '../base/index.js';
import { isBackendType, readBackend } from './backend.js';
import { readCacheV2, readRafsV2 } from './cache-rafs.js';
import { Section, U32_MAX, isPlainObject, typeName, type ReadContext } from './reader.js';
import { V1_PLACES, V1_TOP, V2_PLACES, V2_TOP, v2Place } from './schema.js';
import { BACKEND_TYPES, CONFIG_MAX_BYTES, type BackendConfig, type DaemonConfig, type ParseConfigOptions, type PrefetchConfig } from './types.js';
import { readExternalBackend, readV1 } from './v1.js';

/**
 * Parses a configuration text: JSON config v2 (`"version": 2`), TOML config v2, or legacy v1
 * JSON. Throws `UsageError` naming the offending key (`backend.registry.host: required`).
 */
export function parseConfig(text: string, opts: ParseConfigOptions = {}): DaemonConfig {
  const prefix = prefixOf(opts);
  if (typeof text !== 'string') throw new UsageError(`${prefix}configuration must be text, got ${typeName(text)}`);
  const size = Buffer.byteLength(text, 'utf8');
  if (size > CONFIG_MAX_BYTES) {
    throw new UsageError(`${prefix}configuration is too big: ${size} bytes, the limit is ${CONFIG_MAX_BYTES} (1 MiB)`);
  }
  const body = text.startsWith('\ufeff') ? text.slice(1) : text;
  let json: unknown;
  let jsonError: unknown;
  try {
    json = JSON.parse(body);
  } catch (e) {
    jsonError = e;
  }
  if (jsonError === undefined) return readDocument(json, 'json', opts);
  let doc: unknown;
  try {
    doc = parseToml(body, { integersAsBigInt: true, maxDepth: 64, unsafeKeyBehaviour: 'drop' });
  } catch (e) {
    if (/^\s*[{[]/.test(body)) throw new UsageError(`${prefix}not valid JSON: ${errorMessage(jsonError)}`);
    throw new UsageError(`${prefix}neither JSON nor TOML: ${tomlMessage(e)}`, { cause: e });
  }
  return readDocument(doc, 'toml', opts);
}

/**
 * Parses a configuration that is already a JavaScript object (e.g. JSON decoded elsewhere):
 * config v2 when it has a `version` key, legacy v1 otherwise.
 */
export function parseConfigObject(obj: unknown, opts: ParseConfigOptions = {}): DaemonConfig {
  return readDocument(obj, 'object', opts);
}

/** Reads and parses a configuration file (at most 1 MiB). */
export async function loadConfigFile(path: string, opts: Omit<ParseConfigOptions, 'path'> = {}): Promise<DaemonConfig> {
  let text: string;
  try {
    text = (await readRegularFile(path, CONFIG_MAX_BYTES, `${path}: configuration`)).toString('utf8');
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${path}: cannot read the configuration: ${errorMessage(e)}`, { cause: e });
  }
  return parseConfig(text, { ...opts, path });
}

function prefixOf(opts: ParseConfigOptions): string {
  return opts.path === undefined || opts.path === '' ? '' : `${opts.path}: `;
}

function tomlMessage(e: unknown): string {
  if (e instanceof TomlError) return `${(e.message.split('\n')[0] ?? '').trim()} (line ${e.line}, column ${e.column})`;
  return errorMessage(e);
}

function readDocument(doc: unknown, source: 'json' | 'toml' | 'object', opts: ParseConfigOptions): DaemonConfig {
  const prefix = prefixOf(opts);
  if (!isPlainObject(doc)) throw new UsageError(`${prefix}configuration must be an object, got ${typeName(doc)}`);
  const isV1 = source !== 'toml' && !Object.hasOwn(doc, 'version') && (Object.hasOwn(doc, 'device') || Object.hasOwn(doc, 'mode'));
  const places = isV1 ? V1_PLACES : V2_PLACES;
  const ctx: ReadContext = {
    prefix,
    places,
    bigintIntegers: source === 'toml',
    ...(opts.onWarning ? { onWarning: opts.onWarning } : {}),
  };
  const top = new Section('', doc, { where: '', schema: isV1 ? V1_TOP : V2_TOP }, ctx);
  if (isV1) {
    const v1 = readV1(top);
    return { sourceVersion: 1, ...v1, prefetch: effectivePrefetch(v1.rafs.prefetch, v1.cache.prefetch) };
  }
  return readV2(top);
}

function readV2(top: Section): DaemonConfig {
  if (!top.has('version')) top.fail('version', 'required (must be 2; a legacy v1 config has "device" and "mode" instead)');
  const version = top.int('version', U32_MAX);
  if (version !== 2) top.fail('version', `must be 2, got ${version}`);
  const id = top.string('id', '');
  const backendSec = top.child('backend', v2Place('backend')) ?? top.fail('backend', 'required (the storage backend of the image blobs)');
  const backend = readBackendV2(backendSec);
  const externalBackends = top.children('external_backends', v2Place('external_backends[]')).map(readExternalBackend);
  const cache = readCacheV2(top.child('cache', v2Place('cache')));
  const rafs = readRafsV2(top.child('rafs', v2Place('rafs')));
  const overlaySec = top.child('overlay', v2Place('overlay'));
  const overlay = overlaySec && { upperDir: overlaySec.string('upper_dir'), workDir: overlaySec.string('work_dir') };
  overlaySec?.warnUnknown();
  top.warnUnknown();
  return {
    sourceVersion: 2,
    id,
    backend,
    externalBackends,
    cache,
    rafs,
    ...(overlay ? { overlay } : {}),
    prefetch: effectivePrefetch(rafs.prefetch, cache.prefetch),
  };
}

function readBackendV2(sec: Section): BackendConfig {
  const type = sec.string('type');
  if (!isBackendType(type)) sec.fail('type', `must be one of ${BACKEND_TYPES.join(', ')}; got "${type}"`);
  const places = { proxy: v2Place('backend.<type>.proxy'), mirror: v2Place('backend.registry.mirrors[]') };
  let selected: BackendConfig | undefined;
  for (const t of BACKEND_TYPES) {
    const child = sec.child(t, v2Place(`backend.${t}`));
    if (child === undefined) continue;
    const cfg = readBackend(t, child, places, t === type);
    if (t === type) selected = cfg;
  }
  sec.warnUnknown();
  return selected ?? sec.fail(type, `required when backend.type is "${type}"`);
}

/** The prefetch in effect: the filesystem's if enabled, else the cache's. */
function effectivePrefetch(rafs: PrefetchConfig, cache: PrefetchConfig): PrefetchConfig {
  return { ...(rafs.enable || !cache.enable ? rafs : cache) };
}

/** A copy of the configuration with credentials removed (for logs and the daemon API). */
export function configWithoutSecrets(cfg: DaemonConfig): DaemonConfig {
  const out = structuredClone(cfg);
  const b = out.backend;
  if (b.type === 'registry') {
    delete b.auth;
    delete b.registryToken;
  } else if (b.type === 's3' || b.type === 'oss') {
    b.accessKeyId = '';
    b.accessKeySecret = '';
  }
  out.cache.encryptionKey = '';
  return out;
}
