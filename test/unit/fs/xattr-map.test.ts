/**
 * virtiofsd's --xattrmap rules, parsed and applied (pure): the examples of virtiofsd's
 * doc/xattr-mapping.md, the `map` shorthand with and without a key, first match wins, any
 * delimiter, and the maps virtiofsd refuses (unclosed rules, unknown types and scopes, a map rule
 * not last, no rules).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UsageError } from '../../../src/base/index.js';
import { XattrMap } from '../../../src/fs/passthrough/index.js';
import { Errno, FsError } from '../../../src/fs/types.js';

const b = (s: string): Buffer => Buffer.from(s);
const host = (m: XattrMap, name: string): string => m.toHost(b(name)).toString();
const guest = (m: XattrMap, name: string): string | undefined => {
  const g = m.toGuest(b(name));
  return g === undefined ? undefined : Buffer.from(g).toString();
};
const refused = (m: XattrMap, name: string): number => {
  try {
    m.toHost(b(name));
  } catch (e) {
    if (e instanceof FsError) return e.errno;
    throw e;
  }
  return 0;
};

describe('xattr name mapping (--xattrmap)', () => {
  test('every name under one prefix: ":map::user.virtiofs.:" and its long form', () => {
    for (const spec of [':map::user.virtiofs.:', ':prefix:all::user.virtiofs.::bad:all:::']) {
      const m = XattrMap.parse(spec);
      assert.equal(host(m, 'trusted.overlay.opaque'), 'user.virtiofs.trusted.overlay.opaque', spec);
      assert.equal(host(m, 'security.selinux'), 'user.virtiofs.security.selinux', spec);
      assert.equal(guest(m, 'user.virtiofs.trusted.overlay.opaque'), 'trusted.overlay.opaque', spec);
      assert.equal(guest(m, 'user.plain'), undefined, `${spec}: the host's own names are hidden`);
      assert.equal(guest(m, 'user.virtiofs.'), undefined, `${spec}: the prefix alone would be an empty name`);
    }
  });

  test('one namespace under a prefix, the rest through: "/map/trusted./user.virtiofs./" and its long form', () => {
    const long = `
      /prefix/all/trusted./user.virtiofs./
      /bad/server//trusted./
      /bad/client/user.virtiofs.//
      /ok/all///`;
    for (const spec of ['/map/trusted./user.virtiofs./', long]) {
      const m = XattrMap.parse(spec);
      assert.equal(host(m, 'trusted.overlay.origin'), 'user.virtiofs.trusted.overlay.origin', spec);
      assert.equal(host(m, 'user.mime_type'), 'user.mime_type', spec);
      assert.equal(refused(m, 'user.virtiofs.trusted.x'), Errno.EPERM, `${spec}: no way around the prefix`);
      assert.equal(guest(m, 'user.virtiofs.trusted.overlay.origin'), 'trusted.overlay.origin', spec);
      assert.equal(guest(m, 'trusted.host.secret'), undefined, `${spec}: the host's trusted names are hidden`);
      assert.equal(guest(m, 'user.mime_type'), 'user.mime_type', spec);
    }
  });

  test('hiding a namespace; unsupported; scopes; the first matching rule decides; no rule refuses and hides', () => {
    const hide = XattrMap.parse('/bad/all/security./security./ /ok/all///');
    assert.equal(refused(hide, 'security.selinux'), Errno.EPERM);
    assert.equal(guest(hide, 'security.selinux'), undefined);
    assert.equal(host(hide, 'user.a'), 'user.a');
    const unsup = XattrMap.parse(':unsupported:client:security.:::ok:all:::');
    assert.equal(refused(unsup, 'security.ima'), Errno.EOPNOTSUPP);
    assert.equal(guest(unsup, 'security.ima'), 'security.ima', 'a client rule leaves host names alone');
    const first = XattrMap.parse(':ok:client:user.a::  :bad:client:user.::');
    assert.equal(host(first, 'user.abc'), 'user.abc');
    assert.equal(refused(first, 'user.b'), Errno.EPERM);
    assert.equal(refused(first, 'trusted.x'), Errno.EPERM, 'no rule: refused');
    assert.equal(guest(first, 'user.abc'), undefined, 'no server rule: hidden');
    const delims = XattrMap.parse('|prefix|client|trusted.|x.| #ok#all###');
    assert.equal(host(delims, 'trusted.y'), 'x.trusted.y');
  });

  test('maps virtiofsd refuses are usage errors naming the rule', () => {
    for (const [spec, msg] of [
      [':prefix:client:hi', /rule 1: no closing ':'/],
      [':ok:all::: :bad:all::', /rule 2: no closing ':'/],
      [':TOMATOPIRATE:trusted.:virtiofs.user.:', /rule 1: type 'TOMATOPIRATE' is not one of/],
      ['/prefix/helloworld///', /rule 1: scope 'helloworld' is not one of all, client, server/],
      [':map:trusted.:virtiofs.user.::map:trusted.:virtiofs.user.:', /rule 1: a map rule must be the last one/],
      ['   ', /no rules/],
      ['', /no rules/],
    ] as const) {
      assert.throws(() => XattrMap.parse(spec), (e: unknown) => e instanceof UsageError && msg.test(e.message) && e.message.includes('--xattrmap'), JSON.stringify(spec));
    }
  });
});
