/**
 * Registry authentication (distribution "token authentication specification"): anonymous, HTTP
 * Basic, and Bearer tokens from the realm named by a `WWW-Authenticate: Bearer` challenge, cached
 * per scope until shortly before they expire; the realm is given the credentials (Basic) or an
 * identity token (the OAuth2 refresh-token grant, as Docker does). A fixed `registryToken` is sent
 * until the registry rejects it. The HTTP exchange with the token service is injected (`TokenFetcher`) so that this
 * module is pure policy, tested without sockets.
 */
import { DamselflyError, ErrorCode, untilAborted } from '../../base/index.js';
import type { RegistryAuth as ConfiguredAuth } from '../../config/index.js';

/** One challenge of a `WWW-Authenticate` header; `scheme` is lower case, so are param names. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header (RFC 7235: several challenges, each a scheme then
 * comma-separated `name=value` or `name="quoted \"value\""` params). A token not followed by `=`
 * starts the next challenge; token68 credentials (not used by registries) are not kept.
 */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  if (Array.isArray(header)) return header.flatMap((h) => parseChallenges(h));
  const out: Challenge[] = [];
  const s = header;
  let i = 0;
  const skip = (re: RegExp): void => {
    while (i < s.length && re.test(s[i] as string)) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < s.length && /[!#$%&'*+.^_`|~0-9A-Za-z-]/.test(s[i] as string)) i++;
    return s.slice(start, i);
  };
  while (i < s.length) {
    skip(/[\s,]/);
    const scheme = token();
    if (scheme === '') break;
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    for (;;) {
      skip(/[\s,]/);
      const save = i;
      const name = token();
      skip(/[ \t]/);
      if (name === '' || s[i] !== '=') {
        i = save; // the next challenge's scheme (token68 forms are not used by registries)
        break;
      }
      i++; // '='
      skip(/[ \t]/);
      let value = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          value += s[i];
          i++;
        }
        i++; // closing quote
      } else {
        value = token();
      }
      challenge.params[name.toLowerCase()] = value;
    }
  }
  return out;
}

/** The token scope for `repo`: `repository:<repo>:pull` or `…:pull,push`. */
export function scopeFor(repo: string, push: boolean): string {
  return `repository:${repo}:${push ? 'pull,push' : 'pull'}`;
}

/** The credentials of a registry: the configuration's type (identity tokens included). */
export type Credentials = ConfiguredAuth;

export function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;
}

export interface TokenRequest {
  realm: URL;
  service: string | undefined;
  scopes: string[];
  /** `Basic …` when credentials are configured; undefined for an anonymous token. */
  authorization: string | undefined;
  /** An identity token, to exchange with the OAuth2 refresh-token grant (POST) instead. */
  refreshToken?: string;
  signal?: AbortSignal;
}
export interface TokenAnswer {
  token: string;
  /** Lifetime in seconds (`expires_in`); the spec's default is 60. */
  expiresInSec: number;
}
export type TokenFetcher = (req: TokenRequest) => Promise<TokenAnswer>;

/** Parses a token service's JSON answer (`token` or `access_token`, `expires_in`). */
export function parseTokenAnswer(body: Buffer): TokenAnswer | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof json !== 'object' || json === null) return undefined;
  const o = json as Record<string, unknown>;
  const token = typeof o.token === 'string' && o.token !== '' ? o.token : typeof o.access_token === 'string' ? o.access_token : '';
  if (token === '') return undefined;
  const exp = typeof o.expires_in === 'number' && Number.isFinite(o.expires_in) && o.expires_in > 0 ? o.expires_in : 60;
  return { token, expiresInSec: exp };
}

interface CachedToken {
  value: Promise<string>;
  /** The token once known (to drop exactly the one a registry refused). */
  token?: string;
  /** Epoch ms after which the token is not used any more (0 while being fetched). */
  expiresAt: number;
}

type Mode = { kind: 'unknown' } | { kind: 'basic' } | { kind: 'bearer'; realm: URL; service: string | undefined };

export interface AuthOptions {
  credentials?: Credentials;
  registryToken?: string;
  fetchToken: TokenFetcher;
  now?: () => number;
}

/** What to do after a 401: retry with a new header, or give up with the reason. */
export type UnauthorizedVerdict = { retry: true } | { retry: false; reason: string };

export class RegistryAuth {
  private mode: Mode = { kind: 'unknown' };
  private staticToken: string | undefined;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly opts: AuthOptions;
  private readonly now: () => number;
  /**
   * Token fetches are shared by every request of their scope, so none runs under one request's
   * signal (that request giving up would fail the others); `close()` aborts them.
   */
  private readonly closing = new AbortController();
  /** Tokens fetched so far (for tests and metrics). */
  tokenFetches = 0;

  constructor(opts: AuthOptions) {
    this.opts = opts;
    this.staticToken = opts.registryToken;
    this.now = opts.now ?? Date.now;
  }

  /** The `Authorization` value for a registry request needing `scope`, or undefined. */
  async header(scope: string, signal?: AbortSignal): Promise<string | undefined> {
    if (this.staticToken !== undefined) return `Bearer ${this.staticToken}`;
    switch (this.mode.kind) {
      case 'unknown':
        return undefined;
      case 'basic':
        return this.basic();
      case 'bearer':
        return `Bearer ${await this.token(this.mode, scope, signal)}`;
    }
  }

  /** Aborts token fetches under way (the client is closing). */
  close(): void {
    this.closing.abort(new DamselflyError(ErrorCode.Aborted, 'the registry client was closed'));
  }

  /** `Basic …` of the credentials; undefined without any, or for an identity token (never sent so). */
  private basic(): string | undefined {
    const c = this.opts.credentials;
    return c !== undefined && c.identityToken === undefined ? basicHeader(c) : undefined;
  }

  private cached(scope: string): CachedToken | undefined {
    const now = this.now();
    const usable = (c: CachedToken | undefined): c is CachedToken => c !== undefined && (c.expiresAt === 0 || c.expiresAt > now);
    const exact = this.tokens.get(scope);
    if (usable(exact)) return exact;
    // a pull,push token serves pulls of the same repository
    const m = /^(repository:.+):pull$/.exec(scope);
    const wider = m ? this.tokens.get(`${m[1]}:pull,push`) : undefined;
    return usable(wider) ? wider : undefined;
  }

  /** A token for `scope`: cached, being fetched (joined), or fetched now; `signal` stops only this caller's wait. */
  private token(mode: { realm: URL; service: string | undefined }, scope: string, signal?: AbortSignal): Promise<string> {
    const hit = this.cached(scope);
    return untilAborted(hit !== undefined ? hit.value : this.fetchToken(mode, scope), signal);
  }

  private fetchToken(mode: { realm: URL; service: string | undefined }, scope: string): Promise<string> {
    const entry: CachedToken = { value: Promise.resolve(''), expiresAt: 0 };
    this.tokenFetches++;
    const { credentials } = this.opts;
    entry.value = this.opts
      .fetchToken({
        realm: mode.realm,
        service: mode.service,
        scopes: [scope],
        authorization: this.basic(),
        ...(credentials?.identityToken !== undefined ? { refreshToken: credentials.identityToken } : {}),
        signal: this.closing.signal,
      })
      .then(
        (answer) => {
          // used until 10% of its lifetime (at most 5 s) before it expires
          const ttlMs = answer.expiresInSec * 1000;
          entry.expiresAt = this.now() + ttlMs - Math.min(5000, ttlMs / 10);
          entry.token = answer.token;
          return answer.token;
        },
        (e: unknown) => {
          if (this.tokens.get(scope) === entry) this.tokens.delete(scope);
          throw e;
        },
      );
    this.tokens.set(scope, entry);
    return entry.value;
  }

  /**
   * Learns from a 401 answer to a request that carried `sent` (or nothing): which scheme the
   * registry wants, and that a cached or fixed token is no longer good.
   */
  onUnauthorized(wwwAuthenticate: string | string[] | undefined, sent: string | undefined): UnauthorizedVerdict {
    const challenges = parseChallenges(wwwAuthenticate);
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    const basic = challenges.find((c) => c.scheme === 'basic');
    if (sent !== undefined && this.staticToken !== undefined && sent === `Bearer ${this.staticToken}`) {
      this.staticToken = undefined; // the fixed token was refused: fall back to the challenge
    }
    if (bearer) {
      let realm: URL;
      try {
        realm = new URL(bearer.params.realm as string);
      } catch {
        return { retry: false, reason: 'the Bearer challenge has an invalid realm' };
      }
      if (realm.protocol !== 'http:' && realm.protocol !== 'https:') return { retry: false, reason: 'the Bearer realm is not an http(s) URL' };
      this.mode = { kind: 'bearer', realm, service: bearer.params.service };
      if (sent?.startsWith('Bearer ')) this.dropToken(sent.slice(7));
      return { retry: true };
    }
    if (basic) {
      if (!this.opts.credentials) return { retry: false, reason: 'the registry requires credentials (Basic) and none are configured' };
      if (this.opts.credentials.identityToken !== undefined) return { retry: false, reason: 'the registry requires Basic credentials, and an identity token serves only a Bearer token service' };
      if (sent?.startsWith('Basic ')) return { retry: false, reason: 'the registry rejected the credentials' };
      this.mode = { kind: 'basic' };
      return { retry: true };
    }
    return { retry: false, reason: sent === undefined ? 'the registry requires authentication but sent no usable challenge' : 'the registry rejected the authorization' };
  }

  /** Forgets a refused token, under whichever scope it was cached (a pull,push token serves pulls). */
  private dropToken(token: string): void {
    for (const [key, entry] of this.tokens) if (entry.token === token) this.tokens.delete(key);
  }
}
