/**
 * A real OCI registry for tests: Debian's `docker-registry serve` (distribution 2.8) on
 * 127.0.0.1 with a generated config (filesystem storage in a temp dir, deletes enabled), either
 * open, behind htpasswd Basic auth, or behind Bearer-token auth with an in-process token service
 * that signs RS256 JWTs (x5c header) with a throw-away key. Optionally TLS with a self-signed
 * certificate for 127.0.0.1. Everything started here is killed by `stop()` and at process exit.
 *
 *   const reg = await startRegistry({ auth: 'token' });
 *   // reg.host = '127.0.0.1:PORT', reg.credentials, reg.tokenService.requests …
 *   await reg.stop();
 *
 * Also `copyOciLayoutToRegistry` / `copyRegistryToOciLayout` (skopeo) for conversion tests.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { X509Certificate, createSign, randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { type Server, type ServerResponse, createServer, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type RegistryAuthMode = 'none' | 'basic' | 'token';

export interface StartRegistryOptions {
  /** Default 'none'. */
  auth?: RegistryAuthMode;
  /** Accounts for 'basic' and 'token' (default `{ damselfly: 'damselfly-secret' }`). */
  users?: Record<string, string>;
  /** Fixed port (default: a free one). */
  port?: number;
  /** Serve https with a self-signed certificate for 127.0.0.1 (`certFile` in the result). */
  tls?: boolean;
  /** Token mode: whether a token request without credentials gets pull access (default false). */
  anonymousPull?: boolean;
}

export interface TokenRequestRecord {
  scopes: string[];
  /** The authenticated user, or undefined for an anonymous request. */
  user: string | undefined;
  at: number;
  /** How the client authenticated: a GET (Basic or anonymous) or the OAuth2 refresh-token grant (POST). */
  grant: 'get' | 'refresh_token';
}

export interface TokenService {
  /** The realm the registry advertises, e.g. `http://127.0.0.1:PORT/token`. */
  realm: string;
  service: string;
  issuer: string;
  /** Every token request answered (refused ones included), oldest first. */
  readonly requests: TokenRequestRecord[];
  /** `expires_in` given to clients and the JWT lifetime (default 300 s). */
  ttlSec: number;
  /**
   * The next `n` tokens are already expired for the registry (exp two minutes ago, beyond its
   * 60 s leeway) while clients are told they live `ttlSec`: the first use answers 401.
   */
  expireNext(n: number): void;
  /**
   * Each user's identity token (an OAuth2 refresh token, as `docker login` saves for some
   * registries), accepted by the refresh-token grant: a form POSTed to the realm.
   */
  readonly identityTokens: Record<string, string>;
  /** Signs a token directly (e.g. for `registryToken`), granting `access` to `sub`. */
  mint(access: { name: string; actions: string[] }[], opts?: { sub?: string; ttlSec?: number }): string;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  /** `http(s)://127.0.0.1:PORT` */
  url: string;
  port: number;
  scheme: 'http' | 'https';
  /** The registry's storage root. */
  dataDir: string;
  /** The first user, for 'basic' and 'token'. */
  credentials?: { username: string; password: string };
  tokenService?: TokenService;
  /** The self-signed server certificate (PEM file) when `tls`. */
  certFile?: string;
  /** The registry's recent stderr, for failure messages. */
  logs(): string;
  stop(): Promise<void>;
}

/**
 * Runs `docker-registry serve CONFIG` so that it dies with us even when we are SIGKILLed: a
 * background reader of our stdin pipe kills it at EOF; SIGTERM to the wrapper kills it too.
 */
const REGISTRY_WRAPPER = [
  'exec 3<&0',
  'docker-registry serve "$1" </dev/null & p=$!',
  '( while read -r _; do :; done; kill $p 2>/dev/null ) <&3 &',
  'exec 3<&-',
  "trap 'kill $p 2>/dev/null' TERM INT HUP",
  'wait $p; s=$?; kill $! 2>/dev/null; wait $p 2>/dev/null; exit $s',
].join('\n');

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of children) c.kill('SIGKILL');
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  });
}

/** A TCP port free at the time of asking on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A self-signed RSA key and certificate (SAN IP:127.0.0.1) in `dir`. */
async function makeCert(dir: string, name: string): Promise<{ keyFile: string; certFile: string }> {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=damselfly-test-${name}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
  return { keyFile, certFile };
}

function configYaml(o: { dataDir: string; port: number; auth: string; tls?: { certFile: string; keyFile: string } }): string {
  return [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${o.dataDir}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${o.port}`,
    `  secret: ${randomBytes(16).toString('hex')}`,
    ...(o.tls ? ['  tls:', `    certificate: ${o.tls.certFile}`, `    key: ${o.tls.keyFile}`] : []),
    o.auth,
    '',
  ].join('\n');
}

/** Resolves once `url/v2/` answers any HTTP status; rejects if `child` exits or after 20 s. */
async function waitReady(url: string, child: ChildProcess, logs: () => string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`docker-registry exited (${child.exitCode ?? child.signalCode})\n${logs()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = (url.startsWith('https') ? httpsRequest : httpRequest)(`${url}/v2/`, { method: 'GET', rejectUnauthorized: false, timeout: 1000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`docker-registry did not answer on ${url} within 20 s\n${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  installExitHook();
  const mode = opts.auth ?? 'none';
  const users = opts.users ?? { damselfly: 'damselfly-secret' };
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-registry-'));
  tempDirs.add(dir);
  const dataDir = join(dir, 'data');
  const stops: (() => Promise<void>)[] = [];
  try {
    let auth = '';
    let tokenService: TokenService | undefined;
    if (mode === 'basic') {
      const lines = await Promise.all(Object.entries(users).map(async ([u, p]) => (await run('htpasswd', ['-Bbn', u, p])).stdout.trim()));
      await writeFile(join(dir, 'htpasswd'), `${lines.join('\n')}\n`);
      auth = ['auth:', '  htpasswd:', '    realm: damselfly-test', `    path: ${join(dir, 'htpasswd')}`].join('\n');
    } else if (mode === 'token') {
      const ts = await startTokenService(dir, users, opts.anonymousPull ?? false);
      stops.push(ts.stop);
      tokenService = ts.service;
      auth = ['auth:', '  token:', `    realm: ${ts.service.realm}`, `    service: ${ts.service.service}`, `    issuer: ${ts.service.issuer}`, `    rootcertbundle: ${ts.certFile}`].join('\n');
    }
    const tls = opts.tls ? await makeCert(dir, 'server') : undefined;
    const scheme = tls ? 'https' : 'http';
    for (let tries = 0; ; tries++) {
      const port = opts.port ?? (await freePort());
      const configFile = join(dir, 'config.yml');
      await writeFile(configFile, configYaml({ dataDir, port, auth, ...(tls ? { tls } : {}) }));
      const child = spawn('bash', ['-c', REGISTRY_WRAPPER, 'docker-registry-wrapper', configFile], { stdio: ['pipe', 'pipe', 'pipe'] });
      children.add(child);
      let log = '';
      const keep = (d: Buffer): void => {
        log = (log + d.toString()).slice(-32_768);
      };
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.once('exit', () => children.delete(child));
      const url = `${scheme}://127.0.0.1:${port}`;
      try {
        await waitReady(url, child, () => log);
      } catch (e) {
        child.kill('SIGKILL');
        await exited;
        if (opts.port === undefined && tries < 3 && /address already in use/.test(log)) continue;
        throw e;
      }
      let stopped = false;
      return {
        host: `127.0.0.1:${port}`,
        url,
        port,
        scheme,
        dataDir,
        ...(mode !== 'none' ? { credentials: firstUser(users) } : {}),
        ...(tokenService ? { tokenService } : {}),
        ...(tls ? { certFile: tls.certFile } : {}),
        logs: () => log,
        stop: async () => {
          if (stopped) return;
          stopped = true;
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
          await exited;
          clearTimeout(timer);
          for (const s of stops) await s();
          await rm(dir, { recursive: true, force: true });
          tempDirs.delete(dir);
        },
      };
    }
  } catch (e) {
    for (const s of stops) await s();
    await rm(dir, { recursive: true, force: true });
    tempDirs.delete(dir);
    throw e;
  }
}

function firstUser(users: Record<string, string>): { username: string; password: string } {
  const [username, password] = Object.entries(users)[0] ?? ['', ''];
  return { username, password };
}

/** The in-process token service of 'token' mode (distribution's token authentication spec). */
async function startTokenService(dir: string, users: Record<string, string>, anonymousPull: boolean): Promise<{ service: TokenService; certFile: string; stop: () => Promise<void> }> {
  const { keyFile, certFile } = await makeCert(dir, 'token');
  const key = await readFile(keyFile);
  const certDer = new X509Certificate(await readFile(certFile)).raw.toString('base64');
  let expired = 0;
  const b64u = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const issuer = 'damselfly-test-issuer';
  const serviceName = 'damselfly-test-registry';
  const sign = (sub: string, access: { name: string; actions: string[] }[], expSec: number): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer] };
    const claims = { iss: issuer, sub, aud: serviceName, exp: now + expSec, nbf: now - 5, iat: now, jti: randomUUID(), access: access.map((a) => ({ type: 'repository', ...a })) };
    const input = `${b64u(header)}.${b64u(claims)}`;
    return `${input}.${createSign('RSA-SHA256').update(input).sign(key).toString('base64url')}`;
  };
  const identityTokens = Object.fromEntries(Object.keys(users).map((u) => [u, `idt-${randomUUID()}`]));
  const refuse = (res: ServerResponse, status: number, body: object): void => {
    res.writeHead(status, { 'content-type': 'application/json', ...(status === 401 ? { 'www-authenticate': 'Basic realm="damselfly-test-token"' } : {}) });
    res.end(JSON.stringify(body));
  };
  const answer = (res: ServerResponse, user: string | undefined, scopes: string[]): void => {
    const access = scopes.flatMap((s) => {
      const m = /^repository:(.+):([a-z,*]+)$/.exec(s);
      if (!m) return [];
      const allowed = user !== undefined ? ['pull', 'push', 'delete', '*'] : ['pull'];
      return [{ name: m[1] as string, actions: (m[2] as string).split(',').filter((a) => allowed.includes(a)) }];
    });
    const expSec = expired > 0 ? -120 : service.ttlSec;
    if (expired > 0) expired--;
    const token = sign(user ?? 'anonymous', access, expSec);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: service.ttlSec, issued_at: new Date().toISOString() }));
  };
  const server: Server = createServer((req, res) => {
    if (req.method === 'POST') {
      // The OAuth2 refresh-token grant (distribution's docs/spec/auth/oauth.md): a form body.
      const parts: Buffer[] = [];
      req.on('data', (b: Buffer) => parts.push(b));
      req.on('end', () => {
        const form = new URLSearchParams(Buffer.concat(parts).toString('utf8'));
        const scopes = (form.get('scope') ?? '').split(' ').filter((x) => x !== '');
        const user = Object.keys(identityTokens).find((u) => identityTokens[u] === form.get('refresh_token'));
        const ok = (req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded') && form.get('grant_type') === 'refresh_token' && form.get('service') === serviceName && form.get('client_id') !== null && user !== undefined;
        service.requests.push({ scopes, user: ok ? user : undefined, at: Date.now(), grant: 'refresh_token' });
        if (!ok) return refuse(res, 400, { error: 'invalid_grant' });
        answer(res, user, scopes);
      });
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams.getAll('scope');
    const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
    let user: string | undefined;
    if (basic) {
      const [u, ...rest] = Buffer.from(basic[1] as string, 'base64').toString('utf8').split(':');
      if (u === undefined || users[u] === undefined || users[u] !== rest.join(':')) {
        service.requests.push({ scopes, user: undefined, at: Date.now(), grant: 'get' });
        return refuse(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] });
      }
      user = u;
    } else if (!anonymousPull) {
      service.requests.push({ scopes, user: undefined, at: Date.now(), grant: 'get' });
      return refuse(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] });
    }
    service.requests.push({ scopes, user, at: Date.now(), grant: 'get' });
    answer(res, user, scopes);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const service: TokenService = {
    realm: `http://127.0.0.1:${port}/token`,
    service: serviceName,
    issuer,
    requests: [],
    ttlSec: 300,
    identityTokens,
    expireNext: (n) => {
      expired = n;
    },
    mint: (access, o = {}) => sign(o.sub ?? 'damselfly', access, o.ttlSec ?? 300),
  };
  const stop = async (): Promise<void> => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { service, certFile, stop };
}

/** Why Debian's docker-registry cannot run here, or undefined when it can. */
export function registryMissing(): string | undefined {
  return spawnSync('docker-registry', ['--version']).error ? 'docker-registry (Debian) is not installed' : undefined;
}

/** Why skopeo-based helpers cannot run here, or undefined when they can. */
export async function skopeoMissing(): Promise<string | undefined> {
  try {
    await run('skopeo', ['--version']);
    return undefined;
  } catch {
    return 'skopeo is not installed';
  }
}

const POLICY = '{"default":[{"type":"insecureAcceptAnything"}]}';

async function skopeoCopy(src: string, dest: string, flags: string[]): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-skopeo-'));
  try {
    const policy = join(dir, 'policy.json');
    await writeFile(policy, POLICY);
    await run('skopeo', ['--policy', policy, 'copy', '--quiet', ...flags, src, dest], { maxBuffer: 16 << 20 });
  } catch (e) {
    const x = e as { stderr?: string; message: string };
    throw new Error(`skopeo copy ${src} ${dest} failed: ${x.stderr ?? x.message}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const credsFlag = (flag: string, c?: { username: string; password: string }): string[] => (c ? [flag, `${c.username}:${c.password}`] : []);

/**
 * Copies an OCI image layout (`layoutDir`, optionally one `refName` of its index) to
 * `HOST/REPO:TAG` on a test registry (plain http or self-signed https: no TLS verification).
 */
export async function copyOciLayoutToRegistry(layoutDir: string, ref: string, opts: { credentials?: { username: string; password: string }; refName?: string } = {}): Promise<void> {
  const src = `oci:${layoutDir}${opts.refName ? `:${opts.refName}` : ''}`;
  await skopeoCopy(src, `docker://${ref}`, ['--dest-tls-verify=false', ...credsFlag('--dest-creds', opts.credentials)]);
}

/** Copies `HOST/REPO:TAG` (or `HOST/REPO@DIGEST`) from a test registry into an OCI image layout. */
export async function copyRegistryToOciLayout(ref: string, layoutDir: string, opts: { credentials?: { username: string; password: string }; refName?: string } = {}): Promise<void> {
  const dest = `oci:${layoutDir}${opts.refName ? `:${opts.refName}` : ''}`;
  await skopeoCopy(`docker://${ref}`, dest, ['--src-tls-verify=false', ...credsFlag('--src-creds', opts.credentials)]);
}
