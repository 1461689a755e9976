/**
 * Registry client policy without sockets: WWW-Authenticate parsing, the token cache and renewal
 * rules of `RegistryAuth` (with a fake token fetcher and clock), token answers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Credentials, RegistryAuth, type TokenRequest, basicHeader, parseChallenges, parseTokenAnswer, scopeFor } from '../../../src/oci/registry/index.js';

test('parseChallenges reads Bearer and Basic challenges, quoted values, escapes and several per header', () => {
  assert.deepEqual(parseChallenges('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'), [
    { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } },
  ]);
  assert.deepEqual(parseChallenges('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  assert.deepEqual(parseChallenges('Basic realm="a, b", Bearer realm="http://x/t", error=invalid_token'), [
    { scheme: 'basic', params: { realm: 'a, b' } },
    { scheme: 'bearer', params: { realm: 'http://x/t', error: 'invalid_token' } },
  ]);
  assert.deepEqual(parseChallenges('BEARER Realm = "q\\"uote" , Service=svc'), [{ scheme: 'bearer', params: { realm: 'q"uote', service: 'svc' } }]);
  assert.deepEqual(parseChallenges(['Basic realm="r"', 'Bearer realm="t"']).map((c) => c.scheme), ['basic', 'bearer']);
  assert.deepEqual(parseChallenges(undefined), []);
  assert.deepEqual(parseChallenges(''), []);
  assert.deepEqual(parseChallenges('Bearer'), [{ scheme: 'bearer', params: {} }]);
  // unterminated quote: keeps what there is, never throws or loops
  assert.deepEqual(parseChallenges('Bearer realm="http://x'), [{ scheme: 'bearer', params: { realm: 'http://x' } }]);
});

test('scopes and Basic headers', () => {
  assert.equal(scopeFor('library/alpine', false), 'repository:library/alpine:pull');
  assert.equal(scopeFor('a', true), 'repository:a:pull,push');
  assert.equal(basicHeader({ username: 'u', password: 'p:w' }), `Basic ${Buffer.from('u:p:w').toString('base64')}`);
});

test('parseTokenAnswer accepts token or access_token and defaults expires_in to 60 s', () => {
  assert.deepEqual(parseTokenAnswer(Buffer.from('{"token":"t","expires_in":300}')), { token: 't', expiresInSec: 300 });
  assert.deepEqual(parseTokenAnswer(Buffer.from('{"access_token":"a"}')), { token: 'a', expiresInSec: 60 });
  assert.deepEqual(parseTokenAnswer(Buffer.from('{"token":"t","expires_in":-5}')), { token: 't', expiresInSec: 60 });
  assert.equal(parseTokenAnswer(Buffer.from('{"token":""}')), undefined);
  assert.equal(parseTokenAnswer(Buffer.from('not json')), undefined);
  assert.equal(parseTokenAnswer(Buffer.from('[1]')), undefined);
});

function fakeAuth(opts: { credentials?: Credentials; registryToken?: string; ttlSec?: number; fail?: boolean } = {}) {
  let now = 1_000_000;
  const calls: TokenRequest[] = [];
  const auth = new RegistryAuth({
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    ...(opts.registryToken ? { registryToken: opts.registryToken } : {}),
    now: () => now,
    fetchToken: async (req) => {
      calls.push(req);
      await new Promise((r) => setImmediate(r));
      if (opts.fail) throw new Error('token service down');
      return { token: `tok${calls.length}`, expiresInSec: opts.ttlSec ?? 300 };
    },
  });
  return { auth, calls, advance: (ms: number) => (now += ms) };
}

const BEARER = 'Bearer realm="http://127.0.0.1:9/token",service="svc"';

test('anonymous until challenged; Bearer tokens are fetched once per scope, concurrently shared, and used for pulls by push tokens', async () => {
  const creds = { username: 'u', password: 'secret' };
  const { auth, calls } = fakeAuth({ credentials: creds });
  const pull = scopeFor('r', false);
  const push = scopeFor('r', true);
  assert.equal(await auth.header(pull), undefined);
  assert.deepEqual(auth.onUnauthorized(BEARER, undefined), { retry: true });
  const got = await Promise.all([auth.header(pull), auth.header(pull), auth.header(pull)]);
  assert.deepEqual(got, ['Bearer tok1', 'Bearer tok1', 'Bearer tok1']);
  assert.equal(calls.length, 1);
  assert.equal(calls[0]?.realm.href, 'http://127.0.0.1:9/token');
  assert.equal(calls[0]?.service, 'svc');
  assert.deepEqual(calls[0]?.scopes, [pull]);
  assert.equal(calls[0]?.authorization, basicHeader(creds));
  assert.equal(calls[0]?.refreshToken, undefined);
  assert.equal(await auth.header(push), 'Bearer tok2');
  assert.equal(await auth.header(scopeFor('other', false)), 'Bearer tok3');
  assert.equal(calls.length, 3);
  assert.equal(auth.tokenFetches, 3);
});

test('a refused token is dropped and renewed; an expiring token is renewed before use', async () => {
  const { auth, calls, advance } = fakeAuth({ ttlSec: 60 });
  const pull = scopeFor('r', false);
  auth.onUnauthorized(BEARER, undefined);
  assert.equal(await auth.header(pull), 'Bearer tok1');
  assert.deepEqual(auth.onUnauthorized(`${BEARER},error="invalid_token"`, 'Bearer tok1'), { retry: true });
  assert.equal(await auth.header(pull), 'Bearer tok2');
  advance(50_000); // within 60 s minus the 5 s margin
  assert.equal(await auth.header(pull), 'Bearer tok2');
  advance(6_000);
  assert.equal(await auth.header(pull), 'Bearer tok3');
  assert.equal(calls.length, 3);
});

test('a failed token fetch is not cached', async () => {
  const { auth, calls } = fakeAuth({ fail: true });
  auth.onUnauthorized(BEARER, undefined);
  await assert.rejects(auth.header(scopeFor('r', false)), /token service down/);
  await assert.rejects(auth.header(scopeFor('r', false)), /token service down/);
  assert.equal(calls.length, 2);
});

test('Basic: credentials sent after the challenge; refused credentials and missing credentials end the exchange', async () => {
  const creds = { username: 'u', password: 'secret' };
  const { auth, calls } = fakeAuth({ credentials: creds });
  assert.deepEqual(auth.onUnauthorized('Basic realm="r"', undefined), { retry: true });
  const h = await auth.header(scopeFor('r', false));
  assert.equal(h, basicHeader(creds));
  const verdict = auth.onUnauthorized('Basic realm="r"', h);
  assert.equal(verdict.retry, false);
  assert.match((verdict as { reason: string }).reason, /rejected the credentials/);
  assert.equal(calls.length, 0);
  const anon = fakeAuth().auth;
  const v2 = anon.onUnauthorized('Basic realm="r"', undefined);
  assert.equal(v2.retry, false);
  assert.match((v2 as { reason: string }).reason, /requires credentials/);
  assert.equal(anon.onUnauthorized(undefined, undefined).retry, false);
  assert.equal(anon.onUnauthorized('Bearer realm="ftp://x/"', undefined).retry, false);
  assert.equal(anon.onUnauthorized('Bearer realm="::::"', undefined).retry, false);
});

test('an identity token is exchanged at the Bearer realm (refresh-token grant), never sent as Basic', async () => {
  const creds: Credentials = { username: '<token>', password: '', identityToken: 'refresh-me' };
  const { auth, calls } = fakeAuth({ credentials: creds });
  auth.onUnauthorized(BEARER, undefined);
  assert.equal(await auth.header(scopeFor('r', false)), 'Bearer tok1');
  assert.equal(calls[0]?.refreshToken, 'refresh-me');
  assert.equal(calls[0]?.authorization, undefined, 'no Basic header beside it');
  const basic = fakeAuth({ credentials: creds });
  const v = basic.auth.onUnauthorized('Basic realm="r"', undefined);
  assert.equal(v.retry, false);
  assert.match((v as { reason: string }).reason, /identity token serves only a Bearer token service/);
});

test('a fixed registryToken is used until refused, then the challenge takes over', async () => {
  const { auth, calls } = fakeAuth({ registryToken: 'fixed' });
  assert.equal(await auth.header(scopeFor('r', true)), 'Bearer fixed');
  assert.equal(await auth.header(scopeFor('x', false)), 'Bearer fixed');
  assert.deepEqual(auth.onUnauthorized(BEARER, 'Bearer fixed'), { retry: true });
  assert.equal(await auth.header(scopeFor('r', false)), 'Bearer tok1');
  assert.equal(calls.length, 1);
});
