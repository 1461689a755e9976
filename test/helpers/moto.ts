/**
 * A moto S3 server for tests: `moto_server -H 127.0.0.1 -p PORT` (found on PATH), started on a
 * free port in its own process group, ready once it answers, killed on `stop()` and when the test
 * process exits. `motoAuthUser` turns on moto's credential checks (off by default: moto accepts
 * any keys) after creating an IAM user allowed `s3:*`, whose keys it returns.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';

export interface Moto {
  /** `http://127.0.0.1:PORT` (https with `ssl`). */
  endpoint: string;
  port: number;
  stop(): Promise<void>;
}

/** The moto_server executable on PATH, or undefined. */
export function motoServerPath(): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, 'moto_server');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Why moto tests cannot run here, or undefined when moto_server is there. */
export function motoMissing(): string | undefined {
  return motoServerPath() === undefined ? 'moto_server is not on PATH' : undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** One HTTP request to moto; resolves with the status and body (any status). */
export function motoRequest(endpoint: string, path: string, opts: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, endpoint);
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      { method: opts.method ?? 'GET', headers: opts.headers, timeout: 5000, rejectUnauthorized: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${url.href}: no answer`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // the group of the moto we started (detached)
  } catch {
    child.kill(signal);
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of live) killGroup(c, 'SIGKILL');
  });
}

async function startOnce(bin: string, port: number, ssl: boolean, timeoutMs: number): Promise<Moto> {
  const args = ['-H', '127.0.0.1', '-p', String(port), ...(ssl ? ['-s'] : [])];
  const child = spawn(bin, args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child);
  installExitHook();
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => live.delete(child));
  const endpoint = `${ssl ? 'https' : 'http'}://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    killGroup(child, 'SIGTERM');
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`moto_server exited (${child.exitCode ?? child.signalCode}): ${stderr}`);
    try {
      const r = await motoRequest(endpoint, '/moto-api/');
      if (r.status === 200) return { endpoint, port, stop };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`moto_server on port ${port} did not answer within ${timeoutMs} ms: ${stderr}`);
}

/** Starts moto_server on a free port of 127.0.0.1 and waits until it answers. */
export async function startMoto(opts: { ssl?: boolean; timeoutMs?: number } = {}): Promise<Moto> {
  const bin = motoServerPath();
  if (bin === undefined) throw new Error('moto_server is not on PATH');
  let last: unknown;
  for (let i = 0; i < 3; i++) {
    // The port may be taken between the probe and moto binding it: then try another.
    try {
      return await startOnce(bin, await freePort(), opts.ssl ?? false, opts.timeoutMs ?? 30_000);
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

/** Fields of a small XML answer (moto's IAM query API). */
function xmlField(xml: string, name: string): string {
  const m = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  if (m === null) throw new Error(`no <${name}> in ${xml.slice(0, 300)}`);
  return m[1] as string;
}

/**
 * Creates an IAM user allowed `s3:*` and turns on moto's authentication: from then on requests
 * must be signed with existing keys. Returns the user's keys. Moto-wide: use a moto of its own.
 */
export async function motoAuthUser(endpoint: string, user = 'damselfly-reader'): Promise<{ accessKeyId: string; secretAccessKey: string }> {
  // Unsigned IAM calls are routed by the credential scope of a (not yet checked) signature.
  const headers = {
    'content-type': 'application/x-www-form-urlencoded',
    authorization: 'AWS4-HMAC-SHA256 Credential=AKIDSETUP/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00',
  };
  const iam = async (params: Record<string, string>): Promise<string> => {
    const r = await motoRequest(endpoint, '/', { method: 'POST', headers, body: new URLSearchParams({ ...params, Version: '2010-05-08' }).toString() });
    if (r.status !== 200) throw new Error(`IAM ${params['Action']}: HTTP ${r.status} ${r.body.slice(0, 300)}`);
    return r.body;
  };
  await iam({ Action: 'CreateUser', UserName: user });
  const policy = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:*', Resource: '*' }] };
  await iam({ Action: 'PutUserPolicy', UserName: user, PolicyName: 's3-all', PolicyDocument: JSON.stringify(policy) });
  const key = await iam({ Action: 'CreateAccessKey', UserName: user });
  const r = await motoRequest(endpoint, '/moto-api/reset-auth', { method: 'POST', body: '0', headers: { 'content-type': 'text/plain' } });
  if (r.status !== 200) throw new Error(`moto reset-auth: HTTP ${r.status} ${r.body.slice(0, 300)}`);
  return { accessKeyId: xmlField(key, 'AccessKeyId'), secretAccessKey: xmlField(key, 'SecretAccessKey') };
}
