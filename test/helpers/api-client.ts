/**
 * A request to a daemon's HTTP API on its unix socket (nydusd's routes), as Kata's runtimes and
 * nydus-snapshotter send them; answered within `timeoutMs` or rejected (a test never hangs on it).
 */
import { type IncomingHttpHeaders, request } from 'node:http';

export interface ApiReply {
  status: number;
  /** The body as text ('' for none). */
  text: string;
  /** The body parsed as JSON; undefined when empty or not JSON. */
  json: unknown;
  /** The Server header (nydusd's is "Nydus API"). */
  server: string | undefined;
  headers: IncomingHttpHeaders;
}

export function apiCall(socketPath: string, method: string, path: string, body?: string, timeoutMs = 10_000): Promise<ApiReply> {
  return new Promise((resolve, reject) => {
    const headers = { host: 'localhost', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) };
    const req = request({ socketPath, method, path, headers, timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        let json: unknown;
        try {
          json = text === '' ? undefined : (JSON.parse(text) as unknown);
        } catch {
          json = undefined;
        }
        const server = res.headers['server'];
        resolve({ status: res.statusCode ?? 0, text, json, server: typeof server === 'string' ? server : undefined, headers: res.headers });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}
