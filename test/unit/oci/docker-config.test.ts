/**
 * Saved registry credentials (`docker login` and the containers auth file): which file is read
 * first, how a host is matched against the `auths` keys (scheme, path and case ignored; Docker Hub's
 * legacy key), both entry forms, credential helpers (asked as Docker asks them; one that has
 * nothing, is missing or hangs gives a reason), identity tokens from either, and files that do not
 * parse named in the error.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { UsageError } from '../../../src/base/index.js';
import { askHelper, credentialFiles, helperAnswer, lookupSaved, savedCredentials } from '../../../src/oci/registry/index.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'damselfly-docker-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('hosts match auths keys with or without scheme and path, in any case; Docker Hub also by its legacy key', () => {
  const doc = {
    auths: {
      'https://registry.example.com/v2/': { auth: b64('alice:s3cr:et') },
      'LOCALHOST:5000': { username: 'bob', password: 'pw' },
      'https://index.docker.io/v1/': { auth: b64('hub:token') },
    },
  };
  assert.deepEqual(lookupSaved(doc, 'registry.example.com', 'f'), { kind: 'credentials', credentials: { username: 'alice', password: 's3cr:et' }, file: 'f' });
  assert.deepEqual(lookupSaved(doc, 'localhost:5000', 'f'), { kind: 'credentials', credentials: { username: 'bob', password: 'pw' }, file: 'f' });
  for (const hub of ['docker.io', 'registry-1.docker.io', 'index.docker.io']) {
    assert.deepEqual(lookupSaved(doc, hub, 'f'), { kind: 'credentials', credentials: { username: 'hub', password: 'token' }, file: 'f' }, hub);
  }
  assert.equal(lookupSaved(doc, 'localhost:5001', 'f'), undefined, 'another port is another registry');
  assert.equal(lookupSaved(doc, 'example.com', 'f'), undefined);
  assert.equal(lookupSaved({}, 'example.com', 'f'), undefined);
});

test('an entry kept by a credential helper names it; an entry that does not decode is an error', () => {
  assert.deepEqual(lookupSaved({ credHelpers: { 'gcr.io': 'gcloud' }, auths: { 'gcr.io': { auth: b64('x:y') } } }, 'gcr.io', 'f'), { kind: 'helper', helper: 'gcloud', file: 'f' });
  // `docker login` with a credsStore leaves an empty entry behind.
  assert.deepEqual(lookupSaved({ credsStore: 'desktop', auths: { 'ghcr.io': {} } }, 'ghcr.io', 'f'), { kind: 'helper', helper: 'desktop', file: 'f' });
  assert.equal(lookupSaved({ credsStore: 'desktop', auths: {} }, 'ghcr.io', 'f'), undefined, 'a store says nothing of a registry never logged in to');
  assert.throws(() => lookupSaved({ auths: { 'ghcr.io': { auth: b64('no-colon') } } }, 'ghcr.io', 'f'), (e: unknown) => e instanceof UsageError && /f: the saved credentials of ghcr\.io/.test(e.message));
  // Some registries' logins save an identity token (and a placeholder user) instead of a password.
  const idt = { auths: { 'acr.example': { auth: b64('00000000-0000-0000-0000-000000000000:'), identitytoken: 'eyJ.refresh' } } };
  assert.deepEqual(lookupSaved(idt, 'acr.example', 'f'), { kind: 'credentials', credentials: { username: '<token>', password: '', identityToken: 'eyJ.refresh' }, file: 'f' });
  for (const doc of [[], null, 'auths']) assert.throws(() => lookupSaved(doc, 'ghcr.io', 'f'), (e: unknown) => e instanceof UsageError && /^f: not a JSON object/.test(e.message));
});

test('the containers auth file comes before the Docker config; missing files are skipped, unparsable ones named', async () => {
  const docker = join(dir, 'docker');
  const containers = join(dir, 'auth.json');
  assert.deepEqual(credentialFiles({ DOCKER_CONFIG: docker, REGISTRY_AUTH_FILE: containers }), [containers, join(docker, 'config.json')]);
  assert.deepEqual(credentialFiles({ HOME: '/h', XDG_RUNTIME_DIR: '/run/user/0' }), ['/run/user/0/containers/auth.json', '/h/.docker/config.json']);
  const env = { DOCKER_CONFIG: dir, REGISTRY_AUTH_FILE: containers };
  assert.equal(savedCredentials('r.example', env), undefined, 'neither file exists');
  await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { 'r.example': { auth: b64('d:1') }, 'other.example': { auth: b64('d:2') } } }));
  await writeFile(containers, JSON.stringify({ auths: { 'r.example': { auth: b64('c:1') } } }));
  assert.deepEqual(savedCredentials('r.example', env), { kind: 'credentials', credentials: { username: 'c', password: '1' }, file: containers });
  assert.deepEqual(savedCredentials('other.example', env), { kind: 'credentials', credentials: { username: 'd', password: '2' }, file: join(dir, 'config.json') });
  await writeFile(containers, '{not json');
  assert.throws(() => savedCredentials('r.example', env), (e: unknown) => e instanceof UsageError && e.message.startsWith(`${containers}: `));
});

test('a credential helper is asked with the server on stdin; no answer, a missing or hanging helper give reasons', async () => {
  const bin = join(dir, 'bin');
  await mkdir(bin);
  const helper = async (name: string, body: string): Promise<void> => {
    await writeFile(join(bin, `docker-credential-${name}`), `#!/bin/sh\n${body}\n`);
    await chmod(join(bin, `docker-credential-${name}`), 0o755);
  };
  await helper('echo', 'read s; [ "$1" = get ] && printf \'{"ServerURL":"%s","Username":"user-%s","Secret":"pw"}\' "$s" "$s"');
  await helper('none', 'echo "credentials not found in native keychain"; exit 1');
  await helper('token', 'echo \'{"Username":"<token>","Secret":"refresh"}\'');
  await helper('slow', 'sleep 5');
  await helper('garbage', 'echo hello');
  const env = { PATH: `${bin}:${process.env.PATH ?? ''}` };
  assert.deepEqual(askHelper('echo', 'r.example:5000', env), { credentials: { username: 'user-r.example:5000', password: 'pw' } });
  assert.deepEqual(askHelper('echo', 'docker.io', env), { credentials: { username: 'user-https://index.docker.io/v1/', password: 'pw' } }, 'Docker Hub by its legacy key');
  assert.deepEqual(askHelper('none', 'r.example', env), { reason: 'docker-credential-none get: credentials not found in native keychain' });
  assert.deepEqual(askHelper('token', 'r.example', env), { credentials: { username: '<token>', password: '', identityToken: 'refresh' } }, 'an identity token is kept as one');
  assert.deepEqual(askHelper('garbage', 'r.example', env), { reason: 'docker-credential-garbage get: not a JSON answer' });
  assert.deepEqual(askHelper('missing', 'r.example', env), { reason: 'docker-credential-missing: not found in PATH' });
  assert.deepEqual(askHelper('../evil', 'r.example', env), { reason: 'docker-credential-../evil: not a helper name' });
  const t0 = Date.now();
  const slow = askHelper('slow', 'r.example', env, 300);
  assert.ok(slow.credentials === undefined && slow.reason !== undefined && Date.now() - t0 < 4000, JSON.stringify(slow));
});

test('a helper that exits before its stdin is written (EPIPE) is judged by its answer; other spawn errors are not', () => {
  const epipe = Object.assign(new Error('spawnSync docker-credential-x EPIPE'), { code: 'EPIPE' });
  const none = { error: epipe, status: 1, stdout: 'credentials not found in native keychain\n', stderr: '' };
  assert.deepEqual(helperAnswer('docker-credential-x', none), { reason: 'docker-credential-x get: credentials not found in native keychain' });
  const found = { error: epipe, status: 0, stdout: '{"Username":"u","Secret":"s"}', stderr: '' };
  assert.deepEqual(helperAnswer('docker-credential-x', found), { credentials: { username: 'u', password: 's' } });
  const killed = { error: Object.assign(new Error('spawnSync docker-credential-x ETIMEDOUT'), { code: 'ETIMEDOUT' }), status: null, stdout: '{"Username":"u","Secret":"s"}', stderr: '' };
  assert.deepEqual(helperAnswer('docker-credential-x', killed), { reason: 'docker-credential-x: spawnSync docker-credential-x ETIMEDOUT' });
  assert.deepEqual(helperAnswer('docker-credential-x', { ...none, status: null }), { reason: 'docker-credential-x: spawnSync docker-credential-x EPIPE' }, 'no exit status: no answer');
});
