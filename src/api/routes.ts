/**
 * nydusd's HTTP routes (dragonflyoss/nydus `api/src/http_handler.rs`, `http_endpoint_*.rs`): for
 * each path the methods it takes, whether they carry a body, what they ask of the daemon, and
 * the HttpError variant their failures are reported in. Query values arrive URL-decoded.
 */
import type { DaemonControl, MetricsKind, MountRequest } from '../daemon/index.js';
import { DaemonError } from '../daemon/control.js';
import { BadRequest, type Family } from './errors.js';

export interface ApiRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  /** The body; undefined when the request has none. */
  body: string | undefined;
}

export type ApiResult = { status: 200; body: unknown } | { status: 204 };

interface Method {
  /** HttpError variant of failures (`Mount`, `DaemonInfo`, …). */
  op: string;
  family: Family;
  body: 'none' | 'json';
  run(d: DaemonControl, r: ApiRequest): ApiResult | Promise<ApiResult>;
}

export interface Route {
  /** A query key the route needs before anything else (nydusd checks it first). */
  requiredQuery?: string;
  methods: Partial<Record<string, Method>>;
}

const NO_CONTENT: ApiResult = { status: 204 };
const ok = (body: unknown): ApiResult => ({ status: 200, body });

function parseJson(body: string | undefined): unknown {
  try {
    return JSON.parse(body ?? '');
  } catch (e) {
    throw new BadRequest(`ParseBody(Error(${JSON.stringify((e as Error).message)}))`);
  }
}

function field(obj: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (required) throw new BadRequest(`ParseBody(Error("missing field \`${key}\`"))`);
    return undefined;
  }
  if (typeof v !== 'string') throw new BadRequest(`ParseBody(Error("invalid type for \`${key}\`: expected a string"))`);
  return v;
}

function object(body: string | undefined): Record<string, unknown> {
  const v = parseJson(body);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BadRequest('ParseBody(Error("expected a JSON object"))');
  return v as Record<string, unknown>;
}

/** nydusd's `ApiMountCmd`. */
export function parseMountBody(body: string | undefined): MountRequest {
  const o = object(body);
  const files = o['prefetch_files'];
  if (files !== undefined && files !== null && !(Array.isArray(files) && files.every((f) => typeof f === 'string'))) {
    throw new BadRequest('ParseBody(Error("invalid type for `prefetch_files`: expected a list of strings"))');
  }
  return {
    source: field(o, 'source', true) as string,
    fs_type: field(o, 'fs_type', false) ?? '',
    config: field(o, 'config', true) as string,
    ...(Array.isArray(files) ? { prefetch_files: files as string[] } : {}),
  };
}

function daemonConf(body: string | undefined): { log_level: string } {
  return { log_level: field(object(body), 'log_level', true) as string };
}

function unsupported(): never {
  throw new DaemonError('Unsupported', 'not supported by this daemon');
}

const query = (r: ApiRequest, key: string): string | undefined => r.query.get(key) ?? undefined;

function metricsRoute(kind: MetricsKind, op: string): Route {
  return {
    methods: {
      GET: { op, family: 'metrics', body: 'none', run: (d, r) => ok(d.metrics(kind, query(r, 'id'), { latest: query(r, 'latest') === 'true' })) },
    },
  };
}

const daemonInfoV1: Route = {
  methods: {
    GET: { op: 'DaemonInfo', family: 'daemon', body: 'none', run: (d) => ok(d.info(true)) },
    PUT: { op: 'Configure', family: 'daemon', body: 'json', run: (d, r) => (d.configure(daemonConf(r.body)), NO_CONTENT) },
  },
};

export const ROUTES: ReadonlyMap<string, Route> = new Map<string, Route>([
  ['/api/v1/daemon', daemonInfoV1],
  ['/api/v1/daemon/events', { methods: { GET: { op: 'Events', family: 'daemon', body: 'none', run: (d) => ok(d.events()) } } }],
  [
    '/api/v1/daemon/backend',
    { requiredQuery: 'mountpoint', methods: { GET: { op: 'FsBackendInfo', family: 'metrics', body: 'none', run: (d, r) => ok(d.backendInfo(query(r, 'mountpoint') as string)) } } },
  ],
  ['/api/v1/daemon/start', { methods: { PUT: { op: 'Configure', family: 'daemon', body: 'none', run: (d) => (d.start(), NO_CONTENT) } } }],
  ['/api/v1/daemon/exit', { methods: { PUT: { op: 'Configure', family: 'daemon', body: 'none', run: (d) => (d.exit(), NO_CONTENT) } } }],
  ['/api/v1/daemon/fuse/sendfd', { methods: { PUT: { op: 'Upgrade', family: 'daemon', body: 'none', run: async (d) => (await d.sendFuseFd(), NO_CONTENT) } } }],
  ['/api/v1/daemon/fuse/takeover', { methods: { PUT: { op: 'Upgrade', family: 'daemon', body: 'none', run: async (d) => (await d.takeover(), NO_CONTENT) } } }],
  [
    '/api/v1/mount',
    {
      requiredQuery: 'mountpoint',
      methods: {
        POST: { op: 'Mount', family: 'mount', body: 'json', run: async (d, r) => (await d.mount(query(r, 'mountpoint') as string, parseMountBody(r.body)), NO_CONTENT) },
        PUT: { op: 'Mount', family: 'mount', body: 'json', run: async (d, r) => (await d.remount(query(r, 'mountpoint') as string, parseMountBody(r.body)), NO_CONTENT) },
        DELETE: { op: 'Mount', family: 'mount', body: 'none', run: async (d, r) => (await d.umount(query(r, 'mountpoint') as string), NO_CONTENT) },
      },
    },
  ],
  ['/api/v1/metrics', metricsRoute('global', 'GlobalMetrics')],
  ['/api/v1/metrics/files', metricsRoute('files', 'FsFilesMetrics')],
  ['/api/v1/metrics/pattern', metricsRoute('pattern', 'Pattern')],
  ['/api/v1/metrics/backend', metricsRoute('backend', 'BackendMetrics')],
  ['/api/v1/metrics/blobcache', metricsRoute('blobcache', 'BlobcacheMetrics')],
  [
    '/api/v1/metrics/inflight',
    {
      methods: {
        GET: {
          op: 'InflightMetrics',
          family: 'metrics',
          body: 'none',
          run: (d) => {
            const ops = d.inflight();
            return ops.length === 0 ? NO_CONTENT : ok(ops);
          },
        },
      },
    },
  ],
  [
    '/api/v1/config',
    {
      methods: {
        GET: { op: 'Configure', family: 'daemon', body: 'none', run: unsupported },
        PUT: { op: 'Configure', family: 'daemon', body: 'json', run: unsupported },
      },
    },
  ],
  [
    '/api/v2/daemon',
    {
      methods: {
        GET: { op: 'DaemonInfo', family: 'daemon', body: 'none', run: (d) => ok(d.info(false)) },
        PUT: { op: 'Configure', family: 'daemon', body: 'json', run: (d, r) => (d.configure(daemonConf(r.body)), NO_CONTENT) },
      },
    },
  ],
  [
    '/api/v2/blobs',
    {
      methods: {
        GET: { op: 'GetBlobObject', family: 'daemon', body: 'none', run: unsupported },
        PUT: { op: 'CreateBlobObject', family: 'daemon', body: 'json', run: unsupported },
        DELETE: { op: 'DeleteBlobObject', family: 'daemon', body: 'none', run: unsupported },
      },
    },
  ],
]);

export type { Method };
