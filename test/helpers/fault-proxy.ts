/**
 * Network faults on demand, for tests of registry clients and storage backends:
 *
 * - `startFaultProxy({ target })`: an HTTP reverse proxy (node:http) on 127.0.0.1 in front of
 *   `target` (host:port). It counts requests and response body bytes per path, the connections
 *   open at once (to check pool bounds), logs each request's method, path and headers, and injects
 *   the faults set with `setFault(...)` into the requests they match:
 *     { status: 500, times: 2 }          answer this status (JSON error body) instead of forwarding
 *     { reset: true, times: 1 }          reset the client's connection (TCP RST) before answering
 *     { stall: true }                    never answer (or send headers + `afterBytes` then stop)
 *     { truncate: 100 }                  forward headers (Content-Length intact), 100 body bytes, close
 *     { corrupt: true, at?: 0 }          flip one body byte (at offset `at` of the body)
 *     { delayMs: 50 }                    forward after a delay
 *   Each fault applies to requests matching `match` (a RegExp tested on "METHOD /path?query", or a
 *   predicate; default: every request) for `times` requests (default: all). `BLOB_GET`,
 *   `BLOB_REQUESTS` and `MANIFEST_GET` are ready-made matchers. Stalled connections are closed by
 *   `clearFaults()` and `stop()`. The Host header passes unchanged, so a registry's Location
 *   headers point back at the proxy.
 * - `startConnectProxy()`: a forward proxy answering CONNECT (what undici's ProxyAgent sends),
 *   recording the targets; it tunnels to 127.0.0.1 only.
 */
import { type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse, Agent as HttpAgent, createServer, request as httpRequest } from 'node:http';
import { type AddressInfo, type Socket, connect as netConnect } from 'node:net';

export interface RequestInfo {
  method: string;
  /** Path with the query. */
  path: string;
  headers: IncomingMessage['headers'];
}
export type Matcher = RegExp | ((req: RequestInfo) => boolean);

interface FaultBase {
  /** Which requests (default: all). */
  match?: Matcher;
  /** How many matching requests get the fault (default: every one). */
  times?: number;
}
export type Fault = FaultBase &
  (
    | { status: number; retryAfterSec?: number }
    | { reset: true }
    | { stall: true; afterBytes?: number }
    | { truncate: number }
    | { corrupt: true; at?: number }
    | { delayMs: number }
  );

export const BLOB_GET: Matcher = (r) => r.method === 'GET' && /\/blobs\/[a-z0-9]+:[a-f0-9]+/.test(r.path);
export const BLOB_REQUESTS: Matcher = (r) => /\/blobs\/[a-z0-9]+:[a-f0-9]+/.test(r.path);
export const MANIFEST_GET: Matcher = (r) => r.method === 'GET' && /\/manifests\//.test(r.path);

export interface LoggedRequest extends RequestInfo {
  status?: number;
  fault?: string;
}

export interface ProxyStats {
  requests: number;
  /** Response body bytes sent to clients. */
  bytes: number;
  /** Per path without the query string. */
  byPath: Map<string, { requests: number; bytes: number }>;
  faults: number;
  /** Client connections accepted, open now, and open at once at most. */
  connections: number;
  activeConnections: number;
  maxActiveConnections: number;
  /** The last 2000 requests, oldest first. */
  log: LoggedRequest[];
}

export interface FaultProxy {
  /** `127.0.0.1:PORT` */
  host: string;
  url: string;
  port: number;
  stats: ProxyStats;
  /** Replaces the active faults (first matching fault with remaining `times` wins). */
  setFault(...faults: Fault[]): void;
  /** Removes all faults and ends stalled requests. */
  clearFaults(): void;
  resetStats(): void;
  /** Requests whose path (without query) matches, for assertions. */
  requestsTo(path: RegExp): LoggedRequest[];
  stop(): Promise<void>;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade'];

function newStats(): ProxyStats {
  return { requests: 0, bytes: 0, byPath: new Map(), faults: 0, connections: 0, activeConnections: 0, maxActiveConnections: 0, log: [] };
}

function strip(headers: IncomingMessage['headers']): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ...headers };
  for (const h of HOP_BY_HOP) delete out[h];
  return out;
}

function describe(f: Fault): string {
  if ('status' in f) return `status ${f.status}`;
  if ('reset' in f) return 'reset';
  if ('stall' in f) return 'stall';
  if ('truncate' in f) return `truncate ${f.truncate}`;
  if ('corrupt' in f) return 'corrupt';
  return `delay ${f.delayMs}`;
}

export async function startFaultProxy(opts: { target: string; port?: number }): Promise<FaultProxy> {
  const [targetHost, targetPortText] = opts.target.split(':') as [string, string | undefined];
  const targetPort = Number(targetPortText ?? 80);
  const upstreamAgent = new HttpAgent({ keepAlive: true, maxSockets: 256 });
  let faults: { fault: Fault; left: number }[] = [];
  let stats = newStats();
  const sockets = new Set<Socket>();
  const stalled = new Set<ServerResponse>();

  const pick = (info: RequestInfo): Fault | undefined => {
    for (const f of faults) {
      if (f.left <= 0) continue;
      const m = f.fault.match;
      const hit = m === undefined ? true : m instanceof RegExp ? m.test(`${info.method} ${info.path}`) : m(info);
      if (hit) {
        f.left--;
        return f.fault;
      }
    }
    return undefined;
  };

  const count = (path: string, n: number): void => {
    stats.bytes += n;
    const p = stats.byPath.get(path);
    if (p) p.bytes += n;
  };

  const forward = (req: IncomingMessage, res: ServerResponse, entry: LoggedRequest, fault: Fault | undefined): void => {
    const path = entry.path.split('?')[0] as string;
    const up = httpRequest({ host: targetHost, port: targetPort, method: req.method, path: req.url, headers: strip(req.headers), agent: upstreamAgent }, (ur) => {
      entry.status = ur.statusCode;
      res.writeHead(ur.statusCode ?? 502, strip(ur.headers));
      let sent = 0;
      const limit = fault && 'truncate' in fault ? fault.truncate : fault && 'stall' in fault ? (fault.afterBytes ?? 0) : Infinity;
      ur.on('data', (chunk: Buffer) => {
        if (sent >= limit) return;
        let out = chunk.subarray(0, Math.min(chunk.length, limit - sent));
        if (fault && 'corrupt' in fault) {
          const at = (fault.at ?? 0) - sent;
          if (at >= 0 && at < out.length) {
            out = Buffer.from(out);
            out[at] = (out[at] as number) ^ 0xff;
          }
        }
        sent += out.length;
        count(path, out.length);
        res.write(out);
        if (sent >= limit) {
          ur.destroy();
          if (fault && 'truncate' in fault) res.socket?.end();
          else stalled.add(res);
        }
      });
      ur.on('end', () => {
        if (sent < limit || limit === Infinity) res.end();
      });
      ur.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  };

  const server: Server = createServer((req, res) => {
    const info: RequestInfo = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers };
    const entry: LoggedRequest = { ...info };
    stats.requests++;
    const key = info.path.split('?')[0] as string;
    const p = stats.byPath.get(key) ?? { requests: 0, bytes: 0 };
    p.requests++;
    stats.byPath.set(key, p);
    stats.log.push(entry);
    if (stats.log.length > 2000) stats.log.shift();
    const fault = pick(info);
    if (fault) {
      stats.faults++;
      entry.fault = describe(fault);
    }
    if (fault && 'reset' in fault) {
      req.socket.resetAndDestroy();
      return;
    }
    if (fault && 'stall' in fault && fault.afterBytes === undefined) {
      stalled.add(res);
      req.resume();
      return;
    }
    if (fault && 'status' in fault) {
      req.resume();
      entry.status = fault.status;
      const body = JSON.stringify({ errors: [{ code: 'FAULT_INJECTED', message: `injected status ${fault.status}` }] });
      res.writeHead(fault.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        ...(fault.retryAfterSec !== undefined ? { 'retry-after': String(fault.retryAfterSec) } : {}),
      });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (fault && 'delayMs' in fault) {
      setTimeout(() => forward(req, res, entry, undefined), fault.delayMs);
      return;
    }
    forward(req, res, entry, fault);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    stats.connections++;
    stats.activeConnections++;
    stats.maxActiveConnections = Math.max(stats.maxActiveConnections, stats.activeConnections);
    s.on('close', () => {
      sockets.delete(s);
      stats.activeConnections--;
    });
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const endStalled = (): void => {
    for (const r of stalled) r.socket?.destroy();
    stalled.clear();
  };
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    port,
    get stats() {
      return stats;
    },
    setFault: (...fs) => {
      faults = fs.map((fault) => ({ fault, left: fault.times ?? Infinity }));
    },
    clearFaults: () => {
      faults = [];
      endStalled();
    },
    resetStats: () => {
      const active = stats.activeConnections;
      stats = newStats();
      stats.activeConnections = active;
      stats.maxActiveConnections = active;
    },
    requestsTo: (re) => stats.log.filter((r) => re.test(r.path.split('?')[0] as string)),
    stop: async () => {
      endStalled();
      for (const s of sockets) s.destroy();
      upstreamAgent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface ConnectProxy {
  url: string;
  /** `host:port` of every CONNECT request, in order. */
  connects: string[];
  stop(): Promise<void>;
}

/** A CONNECT-only forward proxy on 127.0.0.1 that tunnels to 127.0.0.1 targets only. */
export async function startConnectProxy(): Promise<ConnectProxy> {
  const connects: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((_req, res) => {
    res.writeHead(405).end();
  });
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    const target = req.url ?? '';
    connects.push(target);
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const m = /^127\.0\.0\.1:(\d+)$/.exec(target);
    if (!m) {
      client.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    const upstream = netConnect(Number(m[1]), '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    connects,
    stop: async () => {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
