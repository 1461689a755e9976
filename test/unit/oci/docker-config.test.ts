/**
 * Saved registry credentials (`docker login` and the containers auth file): which file is read
 * first, how a host is matched against the `auths` keys (scheme, path and case ignored; Docker Hub's
 * legacy key), both entry forms, credential helpers reported rather than run, and files that do
 * not parse named in the error.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { UsageError } from '../../../src/base/index.js';
import { credentialFiles, lookupSaved, savedCredentials } from '../../../src/oci/registry/index.js';

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

test('credential helpers are reported, not run; an entry that does not decode is an error', () => {
  assert.deepEqual(lookupSaved({ credHelpers: { 'gcr.io': 'gcloud' }, auths: { 'gcr.io': { auth: b64('x:y') } } }, 'gcr.io', 'f'), { kind: 'helper', helper: 'gcloud', file: 'f' });
  // `docker login` with a credsStore leaves an empty entry behind.
  assert.deepEqual(lookupSaved({ credsStore: 'desktop', auths: { 'ghcr.io': {} } }, 'ghcr.io', 'f'), { kind: 'helper', helper: 'desktop', file: 'f' });
  assert.equal(lookupSaved({ credsStore: 'desktop', auths: {} }, 'ghcr.io', 'f'), undefined, 'a store says nothing of a registry never logged in to');
  assert.throws(() => lookupSaved({ auths: { 'ghcr.io': { auth: b64('no-colon') } } }, 'ghcr.io', 'f'), (e: unknown) => e instanceof UsageError && /f: the saved credentials of ghcr\.io/.test(e.message));
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
