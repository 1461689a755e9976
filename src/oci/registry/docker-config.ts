/**
 * Credentials that `docker login`, `nerdctl login`, `podman login` and `skopeo login` saved: the
 * `auths` of a Docker config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) and of a
 * containers auth file (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`), as
 * nydusify and skopeo find them. A registry is looked up by `host[:port]`, with or without a
 * scheme or path in the key; Docker Hub also under its legacy key. Entries kept by a credential
 * helper (`credsStore`, `credHelpers`) are asked of it, as Docker does.
 */
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type Logger, UsageError } from '../../base/index.js';
import type { Credentials } from './auth.js';

/** What a lookup found. */
export type SavedCredentials =
  | { kind: 'credentials'; credentials: Credentials; file: string }
  /** The file names a credential helper for the host (or for all): `askHelper` asks it. */
  | { kind: 'helper'; helper: string; file: string };

const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';

/** The files to read, most specific first, from the environment as the tools above read it. */
export function credentialFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  else if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  files.push(join(env.DOCKER_CONFIG ?? join(env.HOME ?? homedir(), '.docker'), 'config.json'));
  return files;
}

/** The registry part of an `auths` key: `https://host:port/v1/` → `host:port`. */
function keyHost(key: string): string {
  return key.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/.*$/, '').toLowerCase();
}

/**
 * Looks `host` up in one parsed file (`file` names it in errors). Undefined when the file says
 * nothing of the host; throws on an entry it cannot decode.
 */
export function lookupSaved(doc: unknown, host: string, file: string): SavedCredentials | undefined {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new UsageError(`${file}: not a JSON object`);
  const d = doc as { auths?: unknown; credHelpers?: unknown; credsStore?: unknown };
  const want = host.toLowerCase();
  const hub = DOCKER_HUB.has(want);
  const helpers = typeof d.credHelpers === 'object' && d.credHelpers !== null ? (d.credHelpers as Record<string, unknown>) : {};
  for (const [k, v] of Object.entries(helpers)) {
    if (typeof v === 'string' && (keyHost(k) === want || (hub && DOCKER_HUB.has(keyHost(k))))) return { kind: 'helper', helper: v, file };
  }
  const auths = typeof d.auths === 'object' && d.auths !== null ? (d.auths as Record<string, unknown>) : {};
  // Docker Hub's legacy key, https://index.docker.io/v1/, is one of its hosts too.
  const entry = Object.entries(auths).find(([k]) => keyHost(k) === want || (hub && DOCKER_HUB.has(keyHost(k))))?.[1];
  if (typeof entry === 'object' && entry !== null) {
    const e = entry as { auth?: unknown; username?: unknown; password?: unknown; identitytoken?: unknown };
    // Some registries' logins save an identity token (OAuth2 refresh token) beside a placeholder user.
    if (typeof e.identitytoken === 'string' && e.identitytoken !== '') {
      return { kind: 'credentials', credentials: { username: '<token>', password: '', identityToken: e.identitytoken }, file };
    }
    if (typeof e.auth === 'string' && e.auth !== '') {
      const plain = Buffer.from(e.auth, 'base64').toString('utf8');
      const i = plain.indexOf(':');
      if (i <= 0) throw new UsageError(`${file}: the saved credentials of ${host} are not base64 of USER:PASSWORD`);
      return { kind: 'credentials', credentials: { username: plain.slice(0, i), password: plain.slice(i + 1) }, file };
    }
    if (typeof e.username === 'string' && typeof e.password === 'string' && e.username !== '') {
      return { kind: 'credentials', credentials: { username: e.username, password: e.password }, file };
    }
  }
  // `docker login` with a credsStore leaves an empty entry: the store has the credentials.
  if (typeof d.credsStore === 'string' && d.credsStore !== '' && entry !== undefined) return { kind: 'helper', helper: d.credsStore, file };
  return undefined;
}

/**
 * The saved credentials of `host` from the first file that has any (a missing file is skipped;
 * one that does not parse is an error naming it).
 */
export function savedCredentials(host: string, env: NodeJS.ProcessEnv = process.env): SavedCredentials | undefined {
  for (const file of credentialFiles(env)) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new UsageError(`${file}: ${(e as Error).message}`, { cause: e });
    }
    const found = lookupSaved(doc, host, file);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** How long a credential helper may take (it may ask a keychain or a cloud's token service). */
const HELPER_TIMEOUT_MS = 20_000;

/**
 * Asks credential helper `docker-credential-<helper>` for `host`'s credentials, as Docker does
 * (`get`, the server on stdin, `{"Username","Secret"}` on stdout). Undefined, with the reason,
 * when it has none, cannot be run or fails. An identity token (Username `<token>`) is kept as
 * one: the token service exchanges it.
 */
export function askHelper(helper: string, host: string, env: NodeJS.ProcessEnv = process.env, timeoutMs = HELPER_TIMEOUT_MS): { credentials?: Credentials; reason?: string } {
  const program = `docker-credential-${helper}`;
  if (!/^[A-Za-z0-9._-]+$/.test(helper)) return { reason: `${program}: not a helper name` };
  const server = DOCKER_HUB.has(host.toLowerCase()) ? DOCKER_HUB_KEY : host;
  return helperAnswer(program, spawnSync(program, ['get'], { input: server, encoding: 'utf8', env, timeout: timeoutMs, maxBuffer: 1 << 20 }));
}

/** What a finished `docker-credential-* get` run (`spawnSync`'s result) answered. */
export function helperAnswer(program: string, r: Pick<SpawnSyncReturns<string>, 'error' | 'status' | 'stdout' | 'stderr'>): { credentials?: Credentials; reason?: string } {
  // A helper that answers without reading the server name (it knows it has nothing) may exit
  // before the name is written: EPIPE, with its answer and exit status intact. Any other error
  // (not found, killed at the timeout) means no answer.
  const unread = (r.error as NodeJS.ErrnoException | undefined)?.code === 'EPIPE' && r.status !== null;
  if (r.error !== undefined && !unread) return { reason: `${program}: ${(r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found in PATH' : r.error.message}` };
  if (r.status !== 0) return { reason: `${program} get: ${(r.stdout || r.stderr).trim().split('\n')[0] || `exit status ${r.status}`}` };
  let answer: { Username?: unknown; Secret?: unknown };
  try {
    answer = JSON.parse(r.stdout) as typeof answer;
  } catch {
    return { reason: `${program} get: not a JSON answer` };
  }
  if (typeof answer.Username !== 'string' || typeof answer.Secret !== 'string' || answer.Username === '') return { reason: `${program} get: no Username and Secret` };
  // The helper's way of handing over an identity token (an OAuth2 refresh token).
  if (answer.Username === '<token>' && answer.Secret === '') return { reason: `${program} get: an empty identity token` };
  if (answer.Username === '<token>') return { credentials: { username: '<token>', password: '', identityToken: answer.Secret } };
  return { credentials: { username: answer.Username, password: answer.Secret } };
}

/**
 * The credentials to use for `host` when the command line and configuration give none: the saved
 * ones, if any, from the file or its credential helper (logged with where they came from, never
 * themselves). A helper that has none, or cannot be run, is a warning: the registry may not need any.
 */
export function credentialsForHost(host: string, log: Logger, env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const found = savedCredentials(host, env);
  if (found === undefined) return undefined;
  if (found.kind === 'helper') {
    const asked = askHelper(found.helper, host, env);
    const where = { registry: host, file: found.file, helper: `docker-credential-${found.helper}` };
    if (asked.credentials === undefined) {
      log.warn({ ...where, reason: asked.reason }, 'no credentials from the credential helper: going on without them');
      return undefined;
    }
    log.info(where, 'using registry credentials from the credential helper');
    return asked.credentials;
  }
  log.info({ registry: host, file: found.file }, 'using saved registry credentials');
  return found.credentials;
}
