/**
 * virtiofsd's --translate-uid / --translate-gid rules, parsed and applied (pure): each type's
 * direction, squashing, forbidden guest ids, identity outside every rule, and the values virtiofsd
 * refuses (bad syntax, empty or overflowing ranges, overlapping sources).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UsageError } from '../../../src/base/index.js';
import { IdTranslation } from '../../../src/fs/passthrough/index.js';
import { Errno, FsError } from '../../../src/fs/types.js';

const parse = (...specs: string[]): IdTranslation => IdTranslation.parse(specs, '--translate-uid');

describe('id translation (--translate-uid / --translate-gid)', () => {
  test('each rule type maps its own direction only; other ids pass unchanged', () => {
    const g = parse('guest:1000:5000:10');
    assert.deepEqual([g.toHost(1000), g.toHost(1009), g.toHost(1010), g.toHost(999)], [5000, 5009, 1010, 999]);
    assert.equal(g.toGuest(5000), 5000, 'guest: is one way');
    const h = parse('host:5000:1000:10');
    assert.deepEqual([h.toGuest(5000), h.toGuest(5009), h.toGuest(5010)], [1000, 1009, 5010]);
    assert.equal(h.toHost(1000), 1000, 'host: is one way');
    const m = parse('map:0:100000:65536');
    assert.deepEqual([m.toHost(0), m.toHost(65535), m.toHost(65536)], [100000, 165535, 65536]);
    assert.deepEqual([m.toGuest(100000), m.toGuest(165535), m.toGuest(99999)], [0, 65535, 99999]);
    assert.deepEqual([parse().toHost(42), parse().toGuest(42), IdTranslation.IDENTITY.toHost(42)], [42, 42, 42]);
  });

  test('squashing: a whole range to one id, as in the unprivileged-daemon example of virtiofsd', () => {
    const t = parse('squash-guest:0:1001:4294967295', 'host:1001:1000:1');
    assert.deepEqual([t.toHost(0), t.toHost(1000), t.toHost(4294967294)], [1001, 1001, 1001]);
    assert.deepEqual([t.toGuest(1001), t.toGuest(0)], [1000, 0]);
    const s = parse('squash-host:100000:65534:65536');
    assert.deepEqual([s.toGuest(100000), s.toGuest(165535), s.toGuest(165536)], [65534, 65534, 165536]);
  });

  test('forbid-guest: giving a file such an id is EPERM; ids outside pass', () => {
    const t = parse('forbid-guest:5000:10', 'guest:0:1001:1');
    assert.throws(() => t.toHost(5000), (e: unknown) => e instanceof FsError && e.errno === Errno.EPERM);
    assert.throws(() => t.toHost(5009), (e: unknown) => e instanceof FsError && e.errno === Errno.EPERM);
    assert.equal(t.toHost(5010), 5010);
    assert.equal(t.toHost(0), 1001);
    assert.equal(t.toGuest(5000), 5000, 'the host side is untouched');
  });

  test('wrong values are usage errors naming the value', () => {
    for (const [spec, msg] of [
      ['guest:1:2', /'guest:1:2'.*expected/],
      ['guest:1:2:3:4', /expected/],
      ['forbid-guest:1:2:3', /forbid-guest:<base>:<count>/],
      ['guest:a:2:3', /decimal ids/],
      ['guest:-1:2:3', /decimal ids/],
      ['other:1:2:3', /the type must be one of/],
      ['guest:1:2:0', /count must be at least 1/],
      ['guest:4294967295:0:2', /below 2\^32/],
      ['squash-guest:0:4294967296:1', /below 2\^32/],
      ['guest:0:4294967295:2', /target range passes 2\^32/],
    ] as const) {
      assert.throws(() => parse(spec), (e: unknown) => e instanceof UsageError && msg.test(e.message) && e.message.includes('--translate-uid'), spec);
    }
  });

  test('overlapping source ranges of one direction are refused; the other direction may overlap', () => {
    assert.throws(() => parse('guest:0:100:10', 'squash-guest:9:200:1'), /the guest id ranges of 'guest:0:100:10' and 'squash-guest:9:200:1' overlap/);
    assert.throws(() => parse('map:0:100:10', 'host:105:0:1'), /the host id ranges of .* overlap/);
    assert.throws(() => parse('forbid-guest:0:1', 'map:0:5:1'), /overlap/);
    // guest:0:… and host:0:… have sources in different id spaces.
    const t = parse('guest:0:100:10', 'host:0:100:10', 'guest:10:300:1');
    assert.deepEqual([t.toHost(9), t.toHost(10), t.toGuest(9)], [109, 300, 109]);
  });
});
