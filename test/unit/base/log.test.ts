/** The log timestamp: isoTime by arithmetic equals Date#toISOString. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isoTime } from '../../../src/base/log.js';

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
