/**
 * Registry client helpers without sockets: URL redaction, error bodies, retry classification and
 * backoff bounds, Retry-After, names and digests, Content-Range parsing, client option checks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { BackendError, DamselflyError, IntegrityError, LogLimiter, UsageError, silentLogger } from '../../../src/base/index.js';
import {
  HttpStatusError,
  RegistryClient,
  backoffDelay,
  checkDigest,
  checkReference,
  checkRepository,
  describeErrorBody,
  digestOf,
  isDigest,
  isRetryable,
  isRetryableStatus,
  parseContentRange,
  parseRetryAfter,
  redactUrl,
  sleep,
  verifyDigest,
  withRetry,
} from '../../../src/oci/registry/index.js';
import { Watchdog } from '../../../src/oci/registry/http.js';

test('redactUrl drops user info and masks every query value but the harmless ones', () => {
  assert.equal(redactUrl('https://user:pw@r.example:5000/v2/a/blobs/uploads/u?_state=SECRET&digest=sha256:ab'), 'https://r.example:5000/v2/a/blobs/uploads/u?_state=***&digest=sha256%3Aab');
  assert.equal(redactUrl('https://s3.example/b?X-Amz-Signature=abc&X-Amz-Credential=k'), 'https://s3.example/b?X-Amz-Signature=***&X-Amz-Credential=***');
  assert.equal(redactUrl('http://t/token?service=s&scope=repository:a:pull'), 'http://t/token?service=s&scope=repository:a:pull');
  assert.equal(redactUrl('not a url'), '<invalid url>');
});

test('describeErrorBody condenses registry error JSON and raw text', () => {
  assert.equal(describeErrorBody(Buffer.from('{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"x"}]}')), 'BLOB_UNKNOWN: blob unknown to registry');
  assert.equal(describeErrorBody(Buffer.from('{"errors":[{"code":"A"},{"code":"B","message":"m"}]}')), 'A; B: m');
  assert.equal(describeErrorBody(Buffer.from('  <html>\n bad gateway </html> ')), '<html> bad gateway </html>');
  assert.equal(describeErrorBody(Buffer.alloc(0)), '');
  // A registry's words reach terminals and logs: no escape sequences, no forged lines, one short line.
  const forged = describeErrorBody(Buffer.from(JSON.stringify({ errors: [{ code: 'DENIED', message: `\u001b[2K\rdamselfly: done\n${'x'.repeat(15_000)}` }] })));
  assert.doesNotMatch(forged, /[\u0000-\u001f\u007f-\u009f]/);
  assert.ok(forged.startsWith('DENIED: [2K damselfly: done x') && forged.length === 200, forged.slice(0, 40));
  assert.equal(describeErrorBody(Buffer.from('not json \u001b[31m red\nline')), 'not json [31m red line');
});

test('retryable statuses and errors', () => {
  for (const s of [408, 429, 500, 502, 503, 504]) assert.equal(isRetryableStatus(s), true, String(s));
  for (const s of [400, 401, 403, 404, 416, 501, 505]) assert.equal(isRetryableStatus(s), false, String(s));
  assert.equal(isRetryable(new BackendError('x', { retryable: true })), true);
  assert.equal(isRetryable(new BackendError('x')), false);
  assert.equal(isRetryable(new HttpStatusError('x', 503, { retryable: true })), true);
  assert.equal(isRetryable(new IntegrityError('x')), true);
  assert.equal(isRetryable(new UsageError('x')), false);
  assert.equal(isRetryable(new Error('x')), false);
});

test('backoff doubles from the base, is jittered between half and all, and never exceeds the cap', () => {
  const p = { limit: 10, baseDelayMs: 100, maxDelayMs: 1000 };
  assert.equal(backoffDelay(p, 0, undefined, () => 0), 50);
  assert.equal(backoffDelay(p, 0, undefined, () => 1), 100);
  assert.equal(backoffDelay(p, 2, undefined, () => 1), 400);
  assert.equal(backoffDelay(p, 20, undefined, () => 1), 1000);
  assert.equal(backoffDelay(p, 1000, undefined, () => 0.5), 750);
  assert.equal(backoffDelay(p, 0, 600, () => 0), 600); // Retry-After raises the wait
  assert.equal(backoffDelay(p, 0, 3_600_000, () => 0), 1000); // within the cap
  for (let a = 0; a < 40; a++) {
    const d = backoffDelay(p, a);
    assert.ok(d >= 50 && d <= 1000, String(d));
  }
});

test('Retry-After: seconds or an HTTP date', () => {
  assert.equal(parseRetryAfter('3'), 3000);
  assert.equal(parseRetryAfter(undefined), undefined);
  assert.equal(parseRetryAfter('soon'), undefined);
  const d = parseRetryAfter(new Date(Date.now() + 10_000).toUTCString()) as number;
  assert.ok(d > 8000 && d <= 10_000, String(d));
  assert.equal(parseRetryAfter(new Date(0).toUTCString()), 0);
});

test('withRetry retries only retryable errors, up to the limit, and stops on abort', async () => {
  const policy = { limit: 3, baseDelayMs: 1, maxDelayMs: 5 };
  let n = 0;
  assert.equal(
    await withRetry(policy, async () => {
      if (++n < 3) throw new BackendError('flaky', { retryable: true });
      return 'ok';
    }, { what: 't', log: silentLogger }),
    'ok',
  );
  assert.equal(n, 3);
  n = 0;
  await assert.rejects(withRetry(policy, async () => {
    n++;
    throw new BackendError('always', { retryable: true });
  }, { what: 't', log: silentLogger }), /always/);
  assert.equal(n, 4);
  n = 0;
  await assert.rejects(withRetry(policy, async () => {
    n++;
    throw new BackendError('fatal');
  }, { what: 't', log: silentLogger }), /fatal/);
  assert.equal(n, 1);
  const ac = new AbortController();
  const slow = { limit: 5, baseDelayMs: 10_000, maxDelayMs: 10_000 };
  const started = Date.now();
  setTimeout(() => ac.abort(), 20);
  await assert.rejects(
    withRetry(slow, async () => {
      throw new BackendError('x', { retryable: true });
    }, { what: 't', log: silentLogger, signal: ac.signal }),
    (e: unknown) => e instanceof DamselflyError && e.code === 'E_ABORTED',
  );
  assert.ok(Date.now() - started < 2000);
  await assert.rejects(sleep(10, AbortSignal.abort()), /aborted/);
});

test('names: repositories, tags and digests are checked before they become paths', () => {
  assert.equal(checkRepository('library/alpine'), 'library/alpine');
  assert.equal(checkRepository('a-b.c__d/e'), 'a-b.c__d/e');
  for (const bad of ['', 'Upper', '../x', 'a//b', 'a/', '/a', 'a?b', 'a b', `${'a'.repeat(256)}`]) assert.throws(() => checkRepository(bad), UsageError, bad);
  const d = digestOf(Buffer.from('hello'));
  assert.equal(d, 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824');
  assert.equal(isDigest(d), true);
  assert.equal(checkReference('v1.0_rc-1'), 'v1.0_rc-1');
  assert.equal(checkReference(d), d);
  for (const bad of ['sha256:abc', 'md5:d41d8cd98f00b204e9800998ecf8427e', '-tag', '.tag', 'a/b', `${'t'.repeat(129)}`]) assert.throws(() => checkReference(bad), UsageError, bad);
  assert.throws(() => checkDigest('sha256:' + 'A'.repeat(64)), UsageError);
  assert.equal(isDigest(digestOf(Buffer.from('x'), 'sha512')), true);
  verifyDigest(Buffer.from('hello'), d, 'x');
  assert.throws(() => verifyDigest(Buffer.from('hellO'), d, 'thing'), (e: unknown) => e instanceof IntegrityError && /thing/.test(e.message));
});

test('Content-Range parsing', () => {
  assert.deepEqual(parseContentRange('bytes 0-99/1000'), { start: 0, end: 99, total: 1000 });
  assert.deepEqual(parseContentRange('bytes 5-5/*'), { start: 5, end: 5, total: undefined });
  for (const bad of [undefined, '', 'bytes 9-1/10', 'bytes */10', 'items 0-1/2', 'bytes 0-1']) assert.equal(parseContentRange(bad), undefined, String(bad));
});

test('client options are checked', async () => {
  const ok = new RegistryClient({ host: '127.0.0.1:5000', scheme: 'http', log: silentLogger });
  assert.equal(ok.base.href, 'http://127.0.0.1:5000/');
  await ok.close();
  const v6 = new RegistryClient({ host: '[::1]:80', scheme: 'https', log: silentLogger });
  await v6.close();
  for (const host of ['user@h', 'h/path', 'h:5000/x', '', 'h?x', 'h:123456']) {
    assert.throws(() => new RegistryClient({ host, scheme: 'http', log: silentLogger }), UsageError, host);
  }
  assert.throws(() => new RegistryClient({ host: 'h', scheme: 'ftp' as 'http', log: silentLogger }), UsageError);
  assert.throws(() => new RegistryClient({ host: 'h', scheme: 'http', retryLimit: -1, log: silentLogger }), UsageError);
  const c = new RegistryClient({ host: '127.0.0.1:9', scheme: 'http', log: silentLogger });
  await assert.rejects(c.readBlob('Bad', digestOf(Buffer.from('x')), 0, 1), UsageError);
  await assert.rejects(c.readBlob('ok', 'sha256:zz', 0, 1), UsageError);
  await assert.rejects(c.readBlob('ok', digestOf(Buffer.from('x')), -1, 1), UsageError);
  assert.equal((await c.readBlob('ok', digestOf(Buffer.from('x')), 0, 0)).length, 0);
  await c.close();
});

test('a watchdog stopped while a consumer held the last chunk stays stopped (no late abort, no live timer)', async () => {
  const wd = new Watchdog(20, 'GET x', undefined);
  wd.bodyPhase();
  wd.pause(); // the consumer holds a chunk
  wd.stop(); // meanwhile the body ends and closes
  wd.resume(); // the consumer comes back
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(wd.signal.aborted, false);
  // Still a watchdog while running: one that is not stopped aborts after its timeout.
  const live = new Watchdog(20, 'GET y', undefined);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(live.signal.aborted, true);
  assert.match(String((live.signal.reason as Error).message), /GET y: no progress \(response headers\) within 20 ms/);
});

test('withRetry with a shared limiter: the retries of many requests give one warning line', async () => {
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) });
  const limiter = new LogLimiter();
  const policy = { limit: 3, baseDelayMs: 1, maxDelayMs: 2 };
  for (let i = 0; i < 5; i++) {
    await assert.rejects(withRetry(policy, async () => {
      throw new BackendError('registry down', { retryable: true });
    }, { what: `GET blob ${i}`, log, limiter }), /registry down/);
  }
  assert.equal(lines.length, 1, lines.join(''));
  assert.match(lines[0] as string, /GET blob 0: retrying/);
  // Without one (a caller of its own), every retry is logged.
  await assert.rejects(withRetry(policy, async () => {
    throw new BackendError('registry down', { retryable: true });
  }, { what: 'alone', log }), /registry down/);
  assert.equal(lines.length, 4);
});
