/**
 * Seeded mutation fuzzing of the configuration reader: the nydusd configurations Kata and
 * nydus-snapshotter pass (legacy v1, the spec's example and the snapshotter's marshalled one) and
 * config v2 for every backend, with values replaced by every JSON type and boundary value, keys
 * removed, renamed and added, as objects, as JSON text and (v2) as TOML text. Each mutant must give
 * a configuration or a UsageError that names where it is wrong — never another exception — and a
 * configuration it gives must print without its secrets.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DamselflyError, ErrorCode } from '../../src/base/index.js';
import { configWithoutSecrets, parseConfig, parseConfigObject } from '../../src/config/index.js';
import { AWKWARD_VALUES, type Json, mutateJson } from '../helpers/json-mutation.js';
import { type Rng, caseRng } from '../helpers/rng.js';
import { SNAPSHOTTER_V1, SPEC_V1 } from '../unit/config/fixtures.js';

const MUTANTS_PER_SEED = 2500;

const V2_REGISTRY = {
  version: 2,
  id: 'fuzz',
  backend: {
    type: 'registry',
    registry: {
      scheme: 'https',
      host: 'r.io',
      repo: 'a/b',
      auth: Buffer.from('user:secret-password').toString('base64'),
      registry_token: 'secret-token',
      skip_verify: false,
      timeout: 5,
      connect_timeout: 5,
      retry_limit: 2,
      proxy: { url: 'http://127.0.0.1:65001', ping_url: 'http://127.0.0.1:40901/server/ping', fallback: true, check_interval: 5, use_http: false },
      mirrors: [{ host: 'http://127.0.0.1:65002', headers: { 'X-Dragonfly-Registry': 'https://r.io' }, health_check_interval: 5, failure_limit: 5 }],
    },
  },
  cache: { type: 'filecache', filecache: { work_dir: '/var/lib/nydus/cache' } },
  rafs: { mode: 'direct', validate: true, enable_xattr: true, prefetch: { enable: true, threads: 4, batch_size: 1048576, bandwidth_limit: 0, prefetch_all: true } },
};
const V2_S3 = {
  version: 2,
  backend: { type: 's3', s3: { endpoint: '127.0.0.1:9000', scheme: 'http', region: 'us-east-1', bucket_name: 'b', object_prefix: 'p/', access_key_id: 'AKIA', access_key_secret: 'secret-key', timeout: 5, retry_limit: 1 } },
  cache: { type: 'blobcache', filecache: { work_dir: '/tmp/c' } },
};
const V2_LOCAL = { version: 2, backend: { type: 'localfs', localfs: { dir: '/var/lib/blobs', alt_dirs: ['/mnt/nas'] } }, cache: { type: 'dummycache' } };
const V2_PROXY = { version: 2, backend: { type: 'http-proxy', 'http-proxy': { addr: '/run/dfdaemon.sock', path: '/blobs', timeout: 5, retry_limit: 3 } } };
const SEEDS: Record<string, object> = { 'v1 spec': SPEC_V1, 'v1 snapshotter': SNAPSHOTTER_V1, 'v2 registry': V2_REGISTRY, 'v2 s3': V2_S3, 'v2 localfs': V2_LOCAL, 'v2 http-proxy': V2_PROXY };
const SECRETS = ['secret-password', 'secret-token', 'secret-key', 's3cr:et'];

function value(rng: Rng): Json | undefined {
  return rng.pick<Json | undefined>([...AWKWARD_VALUES, { type: 'registry' }]);
}

function mutate(seed: object, rng: Rng): Json {
  return mutateJson(seed, rng, { value, keys: ['unknown', 'type', 'version', 'config', 'backend', 'work_dir'] });
}

/** A TOML rendering of a JSON document (tables and inline values), for the TOML reader. */
function toml(o: Json): string | undefined {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) return undefined;
  const lines: string[] = [];
  const inline = (v: Json): string | undefined => {
    if (v === null) return undefined;
    if (typeof v === 'string') return JSON.stringify(v);
    if (typeof v === 'number') return Number.isFinite(v) ? (Number.isInteger(v) && Math.abs(v) > 2 ** 53 ? v.toExponential() : String(v)) : undefined;
    if (typeof v === 'boolean') return String(v);
    if (Array.isArray(v)) {
      const items = v.map(inline);
      return items.some((x) => x === undefined) ? undefined : `[${items.join(', ')}]`;
    }
    const items = Object.entries(v).map(([k, x]) => {
      const s = inline(x);
      return s === undefined ? undefined : `${JSON.stringify(k)} = ${s}`;
    });
    return items.some((x) => x === undefined) ? undefined : `{ ${items.join(', ')} }`;
  };
  for (const [k, v] of Object.entries(o)) {
    const s = inline(v);
    if (s === undefined) return undefined;
    lines.push(`${JSON.stringify(k)} = ${s}`);
  }
  return lines.join('\n');
}

function check(what: string, parse: () => unknown): 'ok' | 'refused' {
  const started = Date.now();
  let cfg: unknown;
  try {
    cfg = parse();
  } catch (e) {
    assert.ok(e instanceof DamselflyError && e.code === ErrorCode.Usage, `${what}: threw ${e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e)}`);
    assert.ok(e.message.length > 0, `${what}: an empty message`);
    return 'refused';
  } finally {
    assert.ok(Date.now() - started < 1000, `${what}: took ${Date.now() - started} ms`);
  }
  const shown = JSON.stringify(configWithoutSecrets(cfg as Parameters<typeof configWithoutSecrets>[0]));
  for (const s of SECRETS) assert.ok(!shown.includes(s), `${what}: the printed configuration shows a secret`);
  return 'ok';
}

test(`configuration mutants (${MUTANTS_PER_SEED} per seed): a configuration or a UsageError, never another exception`, (t) => {
  const counts = new Map<string, number>();
  for (const [name, seed] of Object.entries(SEEDS)) {
    for (let i = 0; i < MUTANTS_PER_SEED; i++) {
      const rng = caseRng(name, i);
      const m = mutate(seed, rng);
      const what = `${name} #${i}: ${JSON.stringify(m).slice(0, 400)}`;
      const results = [check(what, () => parseConfigObject(m, { onWarning: () => undefined })), check(what, () => parseConfig(JSON.stringify(m), { onWarning: () => undefined }))];
      const text = name.startsWith('v2') ? toml(m) : undefined;
      if (text !== undefined) results.push(check(`${what} (TOML)`, () => parseConfig(text, { onWarning: () => undefined })));
      for (const r of results) counts.set(r, (counts.get(r) ?? 0) + 1);
    }
  }
  t.diagnostic([...counts].map(([k, n]) => `${k} ${n}`).join(', '));
  assert.ok((counts.get('ok') ?? 0) > 0 && (counts.get('refused') ?? 0) > 0);
});
