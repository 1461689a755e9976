/** The log timestamp: isoTime by arithmetic equals Date#toISOString. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogLimiter, isoTime } from '../../../src/base/log.js';

test('isoTime equals Date#toISOString from 1970 to 9999, leap days and ends of months included', () => {
  const fixed = [0, 1, 999, 86_399_999, 86_400_000, Date.UTC(2000, 1, 29, 23, 59, 59, 999), Date.UTC(2100, 1, 28, 12), Date.UTC(2100, 2, 1), Date.UTC(2024, 11, 31, 23, 59, 59, 999), Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.now()];
  for (const ms of fixed) assert.equal(isoTime(ms), new Date(ms).toISOString(), `at ${ms}`);
  let x = 0x2545f491;
  for (let i = 0; i < 100_000; i++) {
    x = (x * 1_103_515_245 + 12_345) % 2 ** 31;
    const ms = Math.floor((x / 2 ** 31) * Date.UTC(9999, 11, 31)) + (i % 1000);
    assert.equal(isoTime(ms), new Date(ms).toISOString(), `at ${ms}`);
  }
});

test('LogLimiter: the first event of a kind, then one a minute with the number left out', () => {
  let now = 1_000_000;
  const limiter = new LogLimiter(60_000, () => now);
  assert.equal(limiter.admit('store'), 0, 'the first is logged');
  for (let i = 0; i < 500; i++) assert.equal(limiter.admit('store'), undefined);
  assert.equal(limiter.admit('READ'), 0, 'another kind has its own allowance');
  now += 59_999;
  assert.equal(limiter.admit('store'), undefined);
  now += 1;
  assert.equal(limiter.admit('store'), 501, 'a minute later: logged, with the 501 left out');
  assert.equal(limiter.admit('store'), undefined);
  now += 3_600_000;
  assert.equal(limiter.admit('store'), 1);
  assert.equal(limiter.admit('READ'), 0);
});
