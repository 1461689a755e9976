/**
 * The control API server: HTTP/1.1 on a unix socket (`--apisock`; a stale socket file is removed
 * first, as nydusd does), every answer with `Server: Nydus API` and a JSON content type; 200 with
 * a body, 204 without one, errors as `{"code","message"}` (see `errors.ts`).
 */
import { lstatSync, unlinkSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { type Logger, errorMessage } from '../base/index.js';
import type { DaemonControl } from '../daemon/index.js';
import { BadRequest, badRequest, errorAnswer, noRoute } from './errors.js';
import { type ApiRequest, ROUTES } from './routes.js';

/** Largest request body accepted (a mount request carries a config of at most 1 MiB). */
const MAX_BODY = 2 << 20;

export interface Answer {
  status: number;
  body?: unknown;
}

/** Routes one request to the daemon; never throws. */
export async function dispatch(daemon: DaemonControl, req: ApiRequest): Promise<Answer> {
  const route = ROUTES.get(req.path);
  if (route === undefined) return noRoute();
  if (route.requiredQuery !== undefined && req.query.get(route.requiredQuery) === null) {
    return badRequest(`QueryString(${JSON.stringify(`'${route.requiredQuery}' should be specified in query string`)})`);
  }
  const method = route.methods[req.method];
  if (method === undefined) return badRequest();
  if ((method.body === 'none') !== (req.body === undefined)) return badRequest();
  try {
    return await method.run(daemon, req);
  } catch (e) {
    return errorAnswer(e, method.op, method.family);
  }
}

/** How much of a body over `MAX_BODY` is read and dropped, so that its sender reads the 400. */
const MAX_DISCARDED = 4 * MAX_BODY;

/**
 * The request's body, up to `MAX_BODY` bytes. A longer one (by its Content-Length, or as it comes)
 * is a 400 `PayloadTooLarge`, as nydusd answers it: the rest is read and dropped, up to a bound,
 * rather than the connection reset under the sender, which would never see the answer.
 */
function readBody(req: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const tooLarge = (): void => {
      reject(new BadRequest('PayloadTooLarge'));
      parts.length = 0;
      req.removeAllListeners('data');
      let dropped = 0;
      req.on('data', (d: Buffer) => {
        dropped += d.length;
        if (dropped > MAX_DISCARDED) req.destroy();
      });
    };
    if (Number(req.headers['content-length']) > MAX_BODY) return tooLarge();
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_BODY) return tooLarge();
      parts.push(d);
    });
    req.on('end', () => resolve(size === 0 ? undefined : Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, a: Answer): void {
  res.setHeader('Server', 'Nydus API');
  res.setHeader('Content-Type', 'application/json');
  if (a.status === 204 || a.body === undefined) {
    res.writeHead(a.status);
    res.end();
    return;
  }
  const text = JSON.stringify(a.body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.writeHead(a.status);
  res.end(text);
}

export class ApiServer {
  private readonly server: Server;

  constructor(
    private readonly daemon: DaemonControl,
    private readonly log: Logger,
  ) {
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let answer: Answer;
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const body = await readBody(req);
      answer = await dispatch(this.daemon, { method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, body });
    } catch (e) {
      answer = e instanceof BadRequest ? badRequest(e.debug) : badRequest();
    }
    this.log.debug({ method: req.method, url: req.url, status: answer.status }, 'api request');
    try {
      send(res, answer);
    } catch (e) {
      this.log.warn({ err: errorMessage(e) }, 'api: cannot answer');
    }
  }

  /** Listens on the unix socket `path`, replacing a stale socket file. */
  async listen(path: string): Promise<void> {
    try {
      if (lstatSync(path).isSocket()) unlinkSync(path);
    } catch {
      // absent
    }
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(path, () => {
        this.server.off('error', reject);
        // Later errors (an accept failing for want of file descriptors) are logged; the daemon serves on.
        this.server.on('error', (e) => this.log.warn({ err: errorMessage(e) }, 'api server error'));
        resolve();
      });
    });
    this.log.info({ apisock: path }, 'api server listening');
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
