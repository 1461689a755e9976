/**
 * The tar codec of OCI layers (src/format/tar.ts): the push parser on the reference layer
 * (all-entry-type.tar) fed whole, byte by byte and in odd chunks; ustar prefixes; GNU long
 * names/links; PAX records (binary xattr values, nanosecond mtimes, ids past the octal fields);
 * base-256 numbers; sparse files in every GNU tar format, and maps that lie; the encoder round
 * trip; errors; and agreement with GNU tar in both directions
 * (GNU tar archives parse to what `tar tvf` lists; encoder output lists and extracts with GNU tar).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { lstat, mkdir, readFile, readlink, symlink, writeFile, link } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FormatError, UnsupportedError } from '../../../src/base/index.js';
import { TAR_BLOCK, TAR_END, type TarEntry, type TarEvent, TarParser, encodeSparseTarHeaders, encodeTarHeaders, parsePax, tarPadding } from '../../../src/format/tar.js';
import { native } from '../../../src/native/index.js';
import { VECTORS, sh, vectorsMissing, withTempDir } from '../../helpers/env.js';
import { metaBlocks, oldGnuSparse, patchHeader, paxRecord, tarArchive as archive, tarEntry as entry } from '../../helpers/tar.js';

const VECTOR_TAR = join(VECTORS, 'tar', 'all-entry-type.tar');

interface Parsed {
  entry: TarEntry;
  data: Buffer;
  /** How many hole events (runs of zeros a sparse file's map places) the data includes. */
  holes: number;
}

/**
 * Parses `bytes` fed `step` bytes at a time and checks the event grammar (entry, data*, entry-end).
 * With `reuse`, every piece is passed through one scratch buffer that is overwritten after each
 * write, which proves the parser keeps no view of its input past a `write`.
 */
function parseAll(bytes: Buffer, step = bytes.length, reuse = false): Parsed[] {
  const parser = new TarParser();
  const out: Parsed[] = [];
  let cur: { entry: TarEntry; parts: Buffer[]; holes: number } | undefined;
  const scratch = Buffer.alloc(Math.max(1, step));
  const onEvent = (ev: TarEvent): void => {
    if (ev.kind === 'entry') {
      assert.equal(cur, undefined, 'an entry started before the previous one ended');
      cur = { entry: ev.entry, parts: [], holes: 0 };
    } else if (ev.kind === 'data') {
      assert.ok(cur !== undefined, 'data outside an entry');
      cur.parts.push(Buffer.from(ev.bytes)); // views are only valid until the next write
    } else if (ev.kind === 'hole') {
      assert.ok(cur !== undefined && ev.length > 0, 'a hole outside an entry, or of no bytes');
      cur.parts.push(Buffer.alloc(ev.length));
      cur.holes++;
    } else {
      assert.ok(cur !== undefined, 'entry-end outside an entry');
      out.push({ entry: cur.entry, data: Buffer.concat(cur.parts), holes: cur.holes });
      cur = undefined;
    }
  };
  for (let off = 0; off < bytes.length; off += step) {
    let piece = bytes.subarray(off, Math.min(bytes.length, off + step));
    if (reuse) {
      piece.copy(scratch);
      piece = scratch.subarray(0, piece.length);
    }
    for (const ev of parser.write(piece)) onEvent(ev);
    if (reuse) scratch.fill(0xa5);
  }
  parser.end();
  assert.equal(cur, undefined, 'the last entry did not end');
  for (const p of out) assert.equal(p.data.length, p.entry.type === 'file' ? p.entry.size : 0, `data length of ${p.entry.path.toString()}`);
  return out;
}

/** GNU tar's `tvf` line for an entry (with TZ=UTC, --numeric-owner, --full-time). */
function gnuLine(e: TarEntry): string {
  const t = { file: '-', hardlink: 'h', symlink: 'l', char: 'c', block: 'b', dir: 'd', fifo: 'p' }[e.type];
  const m = e.mode;
  const bit = (mask: number, c: string): string => (m & mask ? c : '-');
  const special = (x: number, s: number, lower: string, upper: string): string => (m & s ? (m & x ? lower : upper) : m & x ? 'x' : '-');
  const perms =
    t +
    bit(0o400, 'r') + bit(0o200, 'w') + special(0o100, 0o4000, 's', 'S') +
    bit(0o040, 'r') + bit(0o020, 'w') + special(0o010, 0o2000, 's', 'S') +
    bit(0o004, 'r') + bit(0o002, 'w') + special(0o001, 0o1000, 't', 'T');
  const size = e.type === 'char' || e.type === 'block' ? `${e.devmajor},${e.devminor}` : String(e.type === 'file' ? e.size : 0);
  const date = new Date(e.mtimeSec * 1000).toISOString().replace('T', ' ').slice(0, 19);
  const time = e.mtimeNsec !== 0 ? `${date}.${String(e.mtimeNsec).padStart(9, '0')}` : date;
  const name = e.path.toString();
  const tail = e.type === 'hardlink' ? ` link to ${e.linkpath.toString()}` : e.type === 'symlink' ? ` -> ${e.linkpath.toString()}` : '';
  return `${perms} ${e.uid}/${e.gid} ${size} ${time} ${name}${tail}`;
}

/** GNU tar's own listing of an archive file, whitespace-normalised like gnuLine. */
function gnuList(file: string): string[] {
  return sh(`TZ=UTC tar --numeric-owner --full-time -tvf '${file}'`)
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/ +/g, ' '));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** Linux dev_t (as lstat gives it) to major and minor. */
function majorMinor(rdev: bigint): [number, number] {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return [major, minor];
}

describe('TarParser on the reference layer all-entry-type.tar', { skip: vectorsMissing() }, () => {
  test('fed whole, byte by byte and in odd chunk sizes: the same entries and data', async () => {
    const bytes = await readFile(VECTOR_TAR);
    const whole = parseAll(bytes);
    assert.equal(whole.length, 9);
    for (const step of [1, 3, 7, 100, 511, 512, 513, 1000, 4099]) {
      assert.deepEqual(parseAll(bytes, step), whole, `step ${step}`);
    }
    assert.deepEqual(parseAll(bytes, 5, true), whole, 'reused input buffer');
    assert.deepEqual(parseAll(bytes, 513, true), whole, 'reused input buffer');
  });

  test('entries agree with GNU tar: listing, link targets, content', async () => {
    const bytes = await readFile(VECTOR_TAR);
    const parsed = parseAll(bytes);
    assert.deepEqual(parsed.map((p) => gnuLine(p.entry)), gnuList(VECTOR_TAR));
    const types = new Set(parsed.map((p) => p.entry.type));
    assert.deepEqual([...types].sort(), ['dir', 'file', 'hardlink', 'symlink']);
    const links = parsed.filter((p) => p.entry.type === 'hardlink');
    assert.equal(links.length, 3);
    for (const l of links) assert.equal(l.entry.linkpath.toString(), 'tar/dir1/dir3/hardlink1.txt');
    const sym = parsed.find((p) => p.entry.type === 'symlink');
    assert.equal(sym?.entry.linkpath.toString(), '../dir1/dir3/file1.txt');
    const file = parsed.find((p) => p.entry.type === 'file');
    assert.ok(file !== undefined);
    assert.deepEqual(file.data, Buffer.from(sh(`tar -xOf '${VECTOR_TAR}' tar/dir1/dir3/hardlink1.txt`), 'utf8'));
    assert.equal(file.data.length, 15);
  });
});

describe('ustar prefix paths', () => {
  test('a GNU tar ustar archive splits long paths into prefix and name; the parser joins them', async () => {
    await withTempDir('tar-ustar', async (dir) => {
      const deep = ['a'.repeat(50), 'b'.repeat(50), 'c'.repeat(30)].join('/');
      await mkdir(join(dir, 'src', deep), { recursive: true });
      await writeFile(join(dir, 'src', deep, 'f'.repeat(90)), 'in a deep directory\n');
      sh(`cd '${dir}/src' && tar --format=ustar --sort=name -cf ../u.tar .`);
      const bytes = await readFile(join(dir, 'u.tar'));
      const parsed = parseAll(bytes, 77);
      const file = parsed.find((p) => p.entry.type === 'file');
      assert.ok(file !== undefined);
      assert.equal(file.entry.path.toString(), `./${deep}/${'f'.repeat(90)}`);
      assert.equal(file.data.toString(), 'in a deep directory\n');
      // The prefix field really was used (no PAX or GNU long-name records in a ustar archive).
      const headerAt = bytes.indexOf(Buffer.from('f'.repeat(90)));
      assert.equal(headerAt % TAR_BLOCK, 0);
      assert.notEqual(bytes[headerAt + 345], 0);
      assert.equal(bytes.indexOf(Buffer.from('@LongLink')), -1);
      assert.deepEqual(parsed.map((p) => gnuLine(p.entry)), gnuList(join(dir, 'u.tar')));
    });
  });

  test('the prefix field is read only with the POSIX magic (GNU headers keep other data there)', () => {
    const ustar = encodeTarHeaders(entry('name', 'file'));
    patchHeader(ustar, (b) => b.write('some/prefix', 345, 'latin1'));
    assert.equal(parseAll(Buffer.concat([ustar, TAR_END]))[0]?.entry.path.toString(), 'some/prefix/name');
    const gnu = encodeTarHeaders(entry('name', 'file'));
    patchHeader(gnu, (b) => {
      b.write('ustar  \0', 257, 'latin1');
      b.write('14321550252\0', 345, 'latin1'); // GNU: atime
    });
    assert.equal(parseAll(Buffer.concat([gnu, TAR_END]))[0]?.entry.path.toString(), 'name');
  });
});

describe('GNU long names and links (L/K records)', () => {
  test('tar --format=gnu: long file names, long symlink and hardlink targets', async () => {
    await withTempDir('tar-gnu', async (dir) => {
      const src = join(dir, 'src');
      const longDir = ['d'.repeat(200), 'e'.repeat(200)].join('/');
      const longName = `${longDir}/${'n'.repeat(240)}`;
      await mkdir(join(src, longDir), { recursive: true });
      await writeFile(join(src, longName), 'long name\n');
      await link(join(src, longName), join(src, 'l'.repeat(150)));
      const target = `${'../'.repeat(10)}${'t'.repeat(250)}`;
      await symlink(target, join(src, 's'.repeat(120)));
      sh(`cd '${src}' && tar --format=gnu --sort=name -cf ../g.tar .`);
      const bytes = await readFile(join(dir, 'g.tar'));
      assert.notEqual(bytes.indexOf(Buffer.from('././@LongLink')), -1, 'GNU long-name records are present');
      const parsed = parseAll(bytes, 333);
      const byPath = new Map(parsed.map((p) => [p.entry.path.toString(), p]));
      const file = byPath.get(`./${longName}`) ?? byPath.get(`./${'l'.repeat(150)}`);
      assert.ok(file !== undefined);
      assert.equal(file.entry.type, 'file');
      assert.equal(file.data.toString(), 'long name\n');
      const hard = parsed.find((p) => p.entry.type === 'hardlink');
      assert.ok(hard !== undefined);
      assert.deepEqual(
        [hard.entry.path.toString(), hard.entry.linkpath.toString()].sort(),
        [`./${longName}`, `./${'l'.repeat(150)}`].sort(),
      );
      const sym = byPath.get(`./${'s'.repeat(120)}`);
      assert.equal(sym?.entry.type, 'symlink');
      assert.equal(sym?.entry.linkpath.toString(), target);
      assert.deepEqual(parsed.map((p) => gnuLine(p.entry)), gnuList(join(dir, 'g.tar')));
    });
  });

  test('uid/gid past the octal fields are stored in base-256 by GNU tar and read back', async () => {
    await withTempDir('tar-gnu-ids', async (dir) => {
      await mkdir(join(dir, 'src'));
      await writeFile(join(dir, 'src', 'f'), 'ids');
      sh(`chown 3000000:4000000 '${dir}/src/f'`);
      sh(`cd '${dir}/src' && tar --format=gnu -cf ../g.tar f`);
      const bytes = await readFile(join(dir, 'g.tar'));
      assert.equal((bytes[108] as number) & 0x80, 0x80, 'uid field is base-256');
      assert.equal((bytes[116] as number) & 0x80, 0x80, 'gid field is base-256');
      const [f] = parseAll(bytes);
      assert.equal(f?.entry.uid, 3_000_000);
      assert.equal(f?.entry.gid, 4_000_000);
      assert.deepEqual([gnuLine((f as Parsed).entry)], gnuList(join(dir, 'g.tar')));
    });
  });
});

describe('PAX extended headers', () => {
  test('tar --xattrs --format=posix: binary xattr values (NUL, newline, 0xff), nanosecond mtimes, big ids', async () => {
    await withTempDir('tar-pax', async (dir) => {
      const src = join(dir, 'src');
      await mkdir(src);
      await writeFile(join(src, 'x'), 'xattrs\n');
      sh(`cd '${src}' && setfattr -n user.bin -v 0x000a0102ff0a00 x && setfattr -n trusted.nl -v 0x0a x && setfattr -n user.text -v 'a=b c' x`);
      sh(`cd '${src}' && touch -h -d @1600000000.123456789 x`);
      await writeFile(join(src, 'ids'), '');
      sh(`cd '${src}' && chown 3000000:4000000 ids && touch -d @1234567890.000000001 ids`);
      sh(`cd '${src}' && tar --xattrs --xattrs-include='*' --format=posix --sort=name -cf ../p.tar x ids`);
      const bytes = await readFile(join(dir, 'p.tar'));
      const parsed = parseAll(bytes, 61);
      const x = parsed.find((p) => p.entry.path.toString() === 'x');
      assert.ok(x !== undefined);
      const xattrs = new Map(x.entry.xattrs.map(([n, v]) => [n.toString(), v]));
      assert.deepEqual(xattrs.get('user.bin'), Buffer.from([0x00, 0x0a, 0x01, 0x02, 0xff, 0x0a, 0x00]));
      assert.deepEqual(xattrs.get('trusted.nl'), Buffer.from([0x0a]));
      assert.deepEqual(xattrs.get('user.text'), Buffer.from('a=b c'));
      assert.equal(x.entry.mtimeSec, 1_600_000_000);
      assert.equal(x.entry.mtimeNsec, 123_456_789);
      assert.equal(x.data.toString(), 'xattrs\n');
      const ids = parsed.find((p) => p.entry.path.toString() === 'ids');
      assert.equal(ids?.entry.uid, 3_000_000);
      assert.equal(ids?.entry.gid, 4_000_000);
      assert.equal(ids?.entry.mtimeSec, 1_234_567_890);
      assert.equal(ids?.entry.mtimeNsec, 1);
      assert.deepEqual(parsed.map((p) => gnuLine(p.entry)), gnuList(join(dir, 'p.tar')));
    });
  });

  test('what PAX records keep is bounded: unused keys dropped, global and extended records within their limits', () => {
    const file = archive([{ entry: entry('f', 'file', { size: 3 }), data: Buffer.from('abc') }]);
    const body = file.subarray(0, file.length - TAR_END.length);
    // Unused keys (a comment, anything unknown) are dropped as read: 40 records of 1 MiB each parse.
    const comments = Array.from({ length: 40 }, (_, i) => metaBlocks('g', paxRecord(`comment${i}`, Buffer.alloc(1 << 20, 0x61))));
    const [kept] = parseAll(Buffer.concat([...comments, body, TAR_END]), 1 << 16);
    assert.equal(kept?.entry.path.toString(), 'f');
    // Global records apply to every later entry: at most 1024 keys or 1 MiB of what is used.
    const manyXattrs = Buffer.concat(Array.from({ length: 1100 }, (_, i) => paxRecord(`SCHILY.xattr.user.k${i}`, 'v')));
    assert.throws(() => parseAll(Buffer.concat([metaBlocks('g', manyXattrs), body, TAR_END])), (e: unknown) => e instanceof FormatError && /global PAX records hold more than 1024 keys/.test(e.message));
    // Extended records pile up until their entry: at most 16 MiB of them.
    const big = (i: number): Buffer => metaBlocks('x', paxRecord(`SCHILY.xattr.user.big${i}`, Buffer.alloc(6 << 20, 0x62)));
    assert.throws(() => parseAll(Buffer.concat([big(0), big(1), big(2), body, TAR_END]), 1 << 20), (e: unknown) => e instanceof FormatError && /extended PAX records hold more than/.test(e.message));
    // Within the limits, each entry gets what the records said.
    const [one] = parseAll(Buffer.concat([big(0), body, TAR_END]), 1 << 20);
    assert.equal(one?.entry.xattrs.length, 1);
    assert.equal(one?.entry.xattrs[0]?.[1].length, 6 << 20);
  });

  test('records: fractional mtimes, LIBARCHIVE.xattr, global headers, size/uid/gid/device overrides', () => {
    const pax = Buffer.concat([
      paxRecord('mtime', '1600000000.5'),
      paxRecord('LIBARCHIVE.xattr.user.%C3%A9t%C3%A9', Buffer.from([0, 10, 255]).toString('base64')),
      paxRecord('SCHILY.xattr.user.raw', Buffer.from('x\ny\0z')),
      paxRecord('uid', '9000000000'),
      paxRecord('path', 'p'.repeat(300)),
    ]);
    const global = Buffer.concat([paxRecord('gid', '77'), paxRecord('mtime', '42.1234567891')]);
    const bytes = Buffer.concat([
      metaBlocks('g', global),
      metaBlocks('x', pax),
      encodeTarHeaders(entry('short', 'file', { size: 3 })),
      Buffer.from('abc'),
      Buffer.alloc(tarPadding(3)),
      encodeTarHeaders(entry('second', 'char', { devmajor: 1, devminor: 2 })),
      TAR_END,
    ]);
    for (const step of [bytes.length, 1, 29]) {
      const [first, second] = parseAll(bytes, step);
      assert.ok(first !== undefined && second !== undefined);
      assert.equal(first.entry.path.toString(), 'p'.repeat(300));
      assert.equal(first.entry.mtimeSec, 1_600_000_000);
      assert.equal(first.entry.mtimeNsec, 500_000_000);
      assert.equal(first.entry.uid, 9_000_000_000);
      assert.equal(first.entry.gid, 77);
      assert.deepEqual(first.entry.xattrs, [
        [Buffer.from('user.été'), Buffer.from([0, 10, 255])],
        [Buffer.from('user.raw'), Buffer.from('x\ny\0z')],
      ]);
      assert.equal(first.data.toString(), 'abc');
      // Local records apply to one entry; global ones to every later entry.
      assert.equal(second.entry.path.toString(), 'second');
      assert.equal(second.entry.uid, 0);
      assert.equal(second.entry.gid, 77);
      assert.equal(second.entry.mtimeSec, 42);
      assert.equal(second.entry.mtimeNsec, 123_456_789);
      assert.deepEqual(second.entry.xattrs, []);
      assert.deepEqual([second.entry.devmajor, second.entry.devminor], [1, 2]);
    }
    const sized = Buffer.concat([
      metaBlocks('x', Buffer.concat([paxRecord('size', '5'), paxRecord('SCHILY.devmajor', '3000000')])),
      encodeTarHeaders(entry('f', 'file', { size: 0 })),
      Buffer.from('12345'),
      Buffer.alloc(tarPadding(5)),
      TAR_END,
    ]);
    const [f] = parseAll(sized, 7);
    assert.equal(f?.entry.size, 5);
    assert.equal(f?.data.toString(), '12345');
  });

  test('malformed records are FormatErrors', () => {
    const bad = [
      Buffer.from('x key=value\n'), // length is not a number
      Buffer.from('99 key=value\n'), // length past the data
      Buffer.from('12 keyvalue\n'), // no '='
      Buffer.from('13 key=value.'), // no newline at the end
      Buffer.from('5 =v\n'), // empty key
      Buffer.from('123456789012345678901234 k=v\n'),
    ];
    for (const b of bad) assert.throws(() => parsePax(b), FormatError, JSON.stringify(b.toString()));
    assert.deepEqual([...parsePax(Buffer.concat([paxRecord('a', ''), Buffer.alloc(20)]))], [['a', Buffer.alloc(0)]]);
    for (const rec of [paxRecord('uid', '-1'), paxRecord('size', '1e3'), paxRecord('mtime', 'noon'), paxRecord('gid', '99999999999999999999')]) {
      const bytes = Buffer.concat([metaBlocks('x', rec), encodeTarHeaders(entry('f', 'file')), TAR_END]);
      assert.throws(() => parseAll(bytes), FormatError, rec.toString());
    }
  });
});

describe('base-256 numeric fields', () => {
  const base256 = (b: Buffer, off: number, len: number, v: bigint): void => {
    b.fill(0, off, off + len);
    for (let i = len - 1; i > 0; i--, v >>= 8n) b[off + i] = Number(v & 0xffn);
    b[off] = 0x80;
  };

  test('a base-256 size with data, and one of 10 GiB (truncated input: FormatError from end)', () => {
    const small = patchHeader(encodeTarHeaders(entry('five', 'file', { size: 5 })), (b) => base256(b, 124, 12, 5n));
    const [f] = parseAll(Buffer.concat([small, Buffer.from('hello'), Buffer.alloc(tarPadding(5)), TAR_END]));
    assert.equal(f?.entry.size, 5);
    assert.equal(f?.data.toString(), 'hello');

    const huge = patchHeader(encodeTarHeaders(entry('huge', 'file')), (b) => base256(b, 124, 12, 10n << 30n));
    const parser = new TarParser();
    const events = parser.write(Buffer.concat([huge, Buffer.alloc(1 << 20, 1)]));
    assert.equal(events[0]?.kind, 'entry');
    assert.equal(events[0]?.kind === 'entry' ? events[0].entry.size : -1, 10 * 2 ** 30);
    let data = 0;
    for (const ev of events) if (ev.kind === 'data') data += ev.bytes.length;
    assert.equal(data, 1 << 20);
    assert.ok(!events.some((ev) => ev.kind === 'entry-end'));
    assert.throws(() => parser.end(), FormatError);
  });

  test('base-256 uid, gid and mtime; negative and oversized values are FormatErrors', () => {
    const h = patchHeader(encodeTarHeaders(entry('ids', 'file')), (b) => {
      base256(b, 108, 8, 3_000_000_000n);
      base256(b, 116, 8, 5n);
      base256(b, 136, 12, 1_700_000_000n);
    });
    const [e] = parseAll(Buffer.concat([h, TAR_END]));
    assert.deepEqual([e?.entry.uid, e?.entry.gid, e?.entry.mtimeSec], [3_000_000_000, 5, 1_700_000_000]);
    const negative = patchHeader(encodeTarHeaders(entry('neg', 'file')), (b) => b.fill(0xff, 124, 136));
    assert.throws(() => parseAll(Buffer.concat([negative, TAR_END])), FormatError);
    const tooBig = patchHeader(encodeTarHeaders(entry('big', 'file')), (b) => base256(b, 124, 12, 1n << 60n));
    assert.throws(() => parseAll(Buffer.concat([tooBig, TAR_END])), /too large/);
  });
});

describe("xattr names with '=' and '%'", () => {
  test("GNU tar writes them as %3D and %25 in SCHILY.xattr keywords; both directions agree with it", async () => {
    await withTempDir('damselfly-tar-xattr-', async (dir) => {
      await mkdir(join(dir, 'src'));
      await writeFile(join(dir, 'src', 'f'), 'x');
      const names = ['user.a=b', 'user.100%', 'user.%3D', 'trusted.=%25='];
      for (const [i, n] of names.entries()) native.lsetxattr(join(dir, 'src', 'f'), n, Buffer.from([i]));
      sh(`tar --format=posix --xattrs --xattrs-include='*' -C '${dir}/src' -cf '${dir}/gnu.tar' f`);
      const [gnu] = parseAll(await readFile(join(dir, 'gnu.tar')));
      const got = (e: TarEntry | undefined): string[] => (e?.xattrs ?? []).map(([n, v]) => `${n.toString()}=${v.toString('hex')}`).sort();
      const want = names.map((n, i) => `${n}=0${i}`).sort();
      assert.deepEqual(got(gnu?.entry), want);
      // Ours, extracted by GNU tar: the same names.
      const ours = archive([{ entry: entry('g', 'file', { size: 1, xattrs: names.map((n, i) => [Buffer.from(n), Buffer.from([i])] as [Buffer, Buffer]) }), data: Buffer.from('y') }]);
      assert.deepEqual(got(parseAll(ours)[0]?.entry), want);
      await writeFile(join(dir, 'ours.tar'), ours);
      await mkdir(join(dir, 'out'));
      sh(`tar --xattrs --xattrs-include='*' -C '${dir}/out' -xf '${dir}/ours.tar'`);
      assert.deepEqual(names.map((n) => native.lgetxattr(join(dir, 'out', 'g'), n)?.toString('hex')), ['00', '01', '02', '03']);
    });
  });

  test('LIBARCHIVE.xattr names are URL-encoded bytes; a bad escape is a FormatError', () => {
    const good = Buffer.concat([metaBlocks('x', paxRecord('LIBARCHIVE.xattr.user.a%3Db%E9', Buffer.from('AQI=', 'latin1'))), encodeTarHeaders(entry('f', 'file')), TAR_END]);
    const [e] = parseAll(good);
    assert.deepEqual(e?.entry.xattrs.map(([n, v]) => [n.toString('latin1'), v.toString('hex')]), [['user.a=b\xe9', '0102']]);
    // A character outside the BMP left unescaped keeps its four UTF-8 bytes.
    const wide = Buffer.concat([metaBlocks('x', paxRecord('LIBARCHIVE.xattr.user.\u{1F600}%41', 'AA==')), encodeTarHeaders(entry('f', 'file')), TAR_END]);
    assert.deepEqual(parseAll(wide)[0]?.entry.xattrs.map(([n]) => n.toString('hex')), [Buffer.from('user.\u{1F600}A').toString('hex')]);
    const bad = Buffer.concat([metaBlocks('x', paxRecord('LIBARCHIVE.xattr.user.%zz', 'AA==')), encodeTarHeaders(entry('f', 'file')), TAR_END]);
    assert.throws(() => parseAll(bad), FormatError);
  });
});

describe('times before 1970', () => {
  test("GNU tar's base-256 and PAX forms parse; the encoder writes them as GNU tar reads them", async () => {
    await withTempDir('damselfly-tar-old-', async (dir) => {
      await mkdir(join(dir, 'src'));
      await writeFile(join(dir, 'src', 'old'), 'a');
      await writeFile(join(dir, 'src', 'older'), 'b');
      native.lutimens(join(dir, 'src', 'old'), -100, 0, -100, 0);
      native.lutimens(join(dir, 'src', 'older'), -2, 750_000_000, -2, 750_000_000); // -1.25 s
      sh(`tar --format=gnu -C '${dir}/src' -cf '${dir}/gnu.tar' old`); // base-256, 0xff first
      sh(`tar --format=pax -C '${dir}/src' -cf '${dir}/pax.tar' older`); // "mtime=-1.25"
      const [gnu] = parseAll(await readFile(join(dir, 'gnu.tar')));
      assert.deepEqual([gnu?.entry.mtimeSec, gnu?.entry.mtimeNsec], [-100, 0]);
      const [pax] = parseAll(await readFile(join(dir, 'pax.tar')));
      assert.deepEqual([pax?.entry.mtimeSec, pax?.entry.mtimeNsec], [-2, 750_000_000]);
      // Ours, extracted by GNU tar: the same instants.
      const ours = archive([
        { entry: entry('a', 'file', { size: 1, mtimeSec: -100 }), data: Buffer.from('a') },
        { entry: entry('b', 'file', { size: 1, mtimeSec: -2, mtimeNsec: 750_000_000 }), data: Buffer.from('b') },
        { entry: entry('c', 'file', { size: 1, mtimeSec: -1, mtimeNsec: 1 }), data: Buffer.from('c') },
      ]);
      assert.deepEqual(
        parseAll(ours).map((p) => [p.entry.mtimeSec, p.entry.mtimeNsec]),
        [[-100, 0], [-2, 750_000_000], [-1, 1]],
      );
      await writeFile(join(dir, 'ours.tar'), ours);
      await mkdir(join(dir, 'out'));
      sh(`tar -C '${dir}/out' -xf '${dir}/ours.tar' 2>/dev/null`); // GNU tar warns of "implausibly old" times
      const ns = async (n: string): Promise<bigint> => (await lstat(join(dir, 'out', n), { bigint: true })).mtimeNs;
      assert.deepEqual([await ns('a'), await ns('b'), await ns('c')], [-100_000_000_000n, -1_250_000_000n, -999_999_999n]);
    });
  });
});

/** Entries of every kind, with everything that pushes the encoder past plain ustar. */
function roundTripItems(): Array<{ entry: TarEntry; data?: Buffer }> {
  const longPath = Buffer.from(`dir/${'ü'.repeat(60)}/${'x'.repeat(180)}`);
  const items: Array<{ entry: TarEntry; data?: Buffer }> = [
    { entry: entry('dir/', 'dir', { mode: 0o1777, mtimeNsec: 999_999_999 }) },
    { entry: entry('dir/empty', 'file') },
    { entry: entry('dir/one', 'file', { size: 1 }), data: Buffer.from('1') },
    { entry: entry('dir/block-511', 'file', { size: 511 }), data: randomBytes(511) },
    { entry: entry('dir/block-512', 'file', { size: 512, mode: 0o4755 }), data: randomBytes(512) },
    { entry: entry('dir/block-513', 'file', { size: 513, mode: 0o2711 }), data: randomBytes(513) },
    { entry: entry('dir/big', 'file', { size: 100_000, uid: 3_000_000, gid: 4_000_000, mtimeNsec: 1 }), data: randomBytes(100_000) },
    { entry: entry(longPath, 'file', { size: 9 }), data: Buffer.from('long path') },
    { entry: entry('dir/hard', 'hardlink', { linkpath: longPath }) },
    { entry: entry('dir/sym', 'symlink', { mode: 0o777, linkpath: Buffer.from('../'.repeat(50) + 'target') }) },
    { entry: entry('dir/sym-short', 'symlink', { mode: 0o777, linkpath: Buffer.from('one') }) },
    { entry: entry('dev/null', 'char', { mode: 0o666, devmajor: 1, devminor: 3 }) },
    { entry: entry('dev/big', 'block', { mode: 0o600, devmajor: 3_000_000, devminor: 70_000 }) },
    { entry: entry('dev/fifo', 'fifo', { mode: 0o640 }) },
    {
      entry: entry('dir/xattrs', 'file', {
        size: 2,
        xattrs: [
          [Buffer.from('user.bin'), Buffer.from([0, 10, 0, 0xff, 10])],
          [Buffer.from('user.empty'), Buffer.alloc(0)],
          [Buffer.from('trusted.big'), randomBytes(3000)],
          [Buffer.from('security.capability'), Buffer.from('0100000200200000000000000000000000000000', 'hex')],
        ],
      }),
      data: Buffer.from('x\n'),
    },
  ];
  return items;
}

describe('encodeTarHeaders → TarParser round trip', () => {
  test('every entry kind comes back exactly, whatever the chunking', () => {
    const items = roundTripItems();
    const bytes = archive(items);
    for (const [step, reuse] of [[bytes.length, false], [1, false], [13, true], [512, false], [4097, true]] as const) {
      const parsed = parseAll(bytes, step, reuse);
      assert.equal(parsed.length, items.length);
      parsed.forEach((p, i) => {
        const want = items[i] as { entry: TarEntry; data?: Buffer };
        assert.deepEqual(p.entry, want.entry, `entry ${i} (step ${step})`);
        assert.deepEqual(p.data, want.data ?? Buffer.alloc(0));
      });
    }
  });

  test('PAX record lengths across digit boundaries (99/100, 999/1000 bytes) agree with GNU tar', async () => {
    // "LEN KEY=VALUE\n": LEN counts its own digits, so records near 10^n are the tricky ones.
    const items: Array<{ entry: TarEntry; data?: Buffer }> = [];
    const key = 'SCHILY.xattr.user.v';
    for (const total of [...range(96, 104), ...range(995, 1004)]) {
      const valueLen = total - String(total).length - ` ${key}=\n`.length;
      items.push({ entry: entry(`f${total}`, 'file', { xattrs: [[Buffer.from('user.v'), Buffer.alloc(valueLen, 0x0a)]] }) });
    }
    const bytes = archive(items);
    assert.deepEqual(parseAll(bytes, 37).map((p) => p.entry), items.map((i) => i.entry));
    await withTempDir('tar-pax-len', async (dir) => {
      await writeFile(join(dir, 'a.tar'), bytes);
      await mkdir(join(dir, 'out'));
      sh(`cd '${dir}/out' && tar --xattrs --xattrs-include='*' -xf ../a.tar`);
      for (const i of items) assert.deepEqual(native.lgetxattr(join(dir, 'out', i.entry.path.toString()), 'user.v'), (i.entry.xattrs[0] as [Buffer, Buffer])[1]);
    });
  });

  test('a plain ustar entry is one block; extended attributes need a PAX header', () => {
    assert.equal(encodeTarHeaders(entry('plain', 'file', { size: 10 })).length, TAR_BLOCK);
    assert.equal(encodeTarHeaders(entry('a'.repeat(100), 'file')).length, TAR_BLOCK);
    assert.ok(encodeTarHeaders(entry('a'.repeat(101), 'file')).length > TAR_BLOCK);
    assert.ok(encodeTarHeaders(entry('n', 'file', { xattrs: [[Buffer.from('user.a'), Buffer.from('b')]] })).length > TAR_BLOCK);
    assert.ok(encodeTarHeaders(entry('n', 'file', { uid: 2_097_152 })).length > TAR_BLOCK);
    assert.equal(encodeTarHeaders(entry('n', 'file', { uid: 2_097_151 })).length, TAR_BLOCK);
  });
});

describe('sparse files', () => {
  test('GNU tar --sparse in each format (old GNU, PAX 0.0, 0.1, 1.0): the files\' bytes, the holes as hole events, however the input is cut', async () => {
    await withTempDir('tar-sparse', async (dir) => {
      // 40 islands: more runs than an old GNU header holds (extension blocks), a PAX 1.0 map of
      // more than one block; a file all hole; one whose data ends it; one with no hole.
      const islands = range(0, 40).map((i) => `printf 'island %02d' ${i} | dd of=many bs=1 seek=${i * 20_011 + 10_000} conv=notrunc status=none`).join(' && ');
      sh(`mkdir '${dir}/src' && cd '${dir}/src' && truncate -s 1M many && ${islands} && truncate -s 100K empty && truncate -s 70000 ends && echo tail >> ends && head -c 3000 /dev/urandom > plain`);
      const files = new Map<string, Buffer>();
      for (const n of ['many', 'empty', 'ends', 'plain']) files.set(n, await readFile(join(dir, 'src', n)));
      for (const [format, flags] of [['gnu', '--format=gnu'], ['0.0', '--format=posix --sparse-version=0.0'], ['0.1', '--format=posix --sparse-version=0.1'], ['1.0', '--format=posix --sparse-version=1.0']] as const) {
        sh(`cd '${dir}/src' && tar ${flags} --sparse -cf '${dir}/${format}.tar' many empty ends plain`);
        const bytes = await readFile(join(dir, `${format}.tar`));
        for (const step of [bytes.length, 1, 7, 1000]) {
          const parsed = parseAll(bytes, step, step === 7);
          assert.deepEqual(parsed.map((p) => p.entry.path.toString()), ['many', 'empty', 'ends', 'plain'], `${format}, step ${step}`);
          for (const p of parsed) {
            const want = files.get(p.entry.path.toString()) as Buffer;
            assert.equal(p.entry.size, want.length, `${format} ${p.entry.path.toString()}: size`);
            assert.ok(p.data.equals(want), `${format} ${p.entry.path.toString()}, step ${step}: bytes`);
          }
          // many: a hole before each island and after the last; empty: one; ends: one.
          assert.deepEqual(parsed.map((p) => p.holes), [41, 1, 1, 0], `${format}, step ${step}: holes`);
        }
      }
    });
  });

  /** One file entry: PAX records (repeated keys kept), then the header, the stored bytes and the end. */
  const paxSparse = (records: Array<[string, string]>, stored: Buffer | string, type: TarEntry['type'] = 'file'): Buffer => {
    const data = Buffer.from(stored);
    return Buffer.concat([
      metaBlocks('x', Buffer.concat(records.map(([k, v]) => paxRecord(k, v)))),
      encodeTarHeaders(entry('./GNUSparseFile.1/s', type, { size: type === 'file' ? data.length : 0 })),
      type === 'file' ? data : Buffer.alloc(0),
      Buffer.alloc(type === 'file' ? tarPadding(data.length) : 0),
      TAR_END,
    ]);
  };
  /** A 20-byte file: "abc" at 2, "XY" at 10. */
  const want = Buffer.alloc(20);
  want.write('abc', 2);
  want.write('XY', 10);
  const v01 = (map: string, size = '20', numblocks = String(map.split(',').length / 2)): Array<[string, string]> => [
    ['GNU.sparse.major', '0'],
    ['GNU.sparse.minor', '1'],
    ['GNU.sparse.name', 's'],
    ['GNU.sparse.size', size],
    ['GNU.sparse.numblocks', numblocks],
    ['GNU.sparse.map', map],
  ];
  /** A PAX 1.0 map as the start of the data: the text, padded to a block. */
  const map10 = (text: string): Buffer => Buffer.concat([Buffer.from(text), Buffer.alloc(tarPadding(text.length))]);
  const v10: Array<[string, string]> = [
    ['GNU.sparse.major', '1'],
    ['GNU.sparse.minor', '0'],
    ['GNU.sparse.name', 's'],
    ['GNU.sparse.realsize', '20'],
  ];
  const oldGnu = (runs: Array<[number, number]>, realsize: number, stored: string): Buffer => Buffer.concat([oldGnuSparse('s', runs, realsize, Buffer.from(stored)), TAR_END]);
  const one = (bytes: Buffer): Parsed => {
    const parsed = parseAll(bytes);
    assert.equal(parsed.length, 1);
    return parsed[0] as Parsed;
  };
  const fails = (bytes: Buffer, pattern: RegExp, type: typeof FormatError | typeof UnsupportedError = FormatError): void => {
    for (const step of [bytes.length, 1]) assert.throws(() => parseAll(bytes, step), (e: unknown) => e instanceof type && pattern.test(e.message), `${pattern} (step ${step})`);
  };

  test('maps in PAX records (0.0, 0.1), in the data (1.0) and in an old GNU header give the same file', () => {
    for (const bytes of [
      paxSparse(v01('2,3,10,2'), 'abcXY'),
      // 0.0: repeated offset and numbytes records, no version.
      paxSparse([['GNU.sparse.size', '20'], ['GNU.sparse.numblocks', '2'], ['GNU.sparse.offset', '2'], ['GNU.sparse.numbytes', '3'], ['GNU.sparse.offset', '10'], ['GNU.sparse.numbytes', '2'], ['path', 's']], 'abcXY'),
      paxSparse(v10, Buffer.concat([map10('2\n2\n3\n10\n2\n'), Buffer.from('abcXY')])),
      oldGnu([[2, 3], [10, 2], [20, 0]], 20, 'abcXY'),
    ]) {
      const p = one(bytes);
      assert.equal(p.entry.path.toString(), 's');
      assert.equal(p.entry.type, 'file');
      assert.ok(p.data.equals(want), p.data.toString('hex'));
      assert.equal(p.holes, 3);
    }
    // A map of no runs: all hole; GNU.sparse records in a global header are not any file's.
    assert.ok(one(paxSparse(v01('', '7', '0'), '')).data.equals(Buffer.alloc(7)));
    const global = Buffer.concat([metaBlocks('g', Buffer.concat(v01('2,3,10,2').map(([k, v]) => paxRecord(k, v)))), encodeTarHeaders(entry('plain', 'file', { size: 2 })), Buffer.from('ok'), Buffer.alloc(tarPadding(2)), TAR_END]);
    assert.equal(one(global).data.toString(), 'ok');
  });

  test('maps that lie are FormatErrors; unknown versions are UnsupportedErrors; nothing reads past the entry', () => {
    fails(paxSparse(v01('10,2,2,3'), 'XYabc'), /overlap, are out of order/);
    fails(paxSparse(v01('2,3,2,2'), 'abcXY'), /overlap, are out of order/);
    fails(paxSparse(v01('2,3,19,2'), 'abcXY'), /end past its 20 bytes/);
    fails(paxSparse(v01('2,3,10,3'), 'abcXY'), /places 6 bytes, the archive holds 5/);
    fails(paxSparse(v01('2,3,10,2', '20', '3'), 'abcXY'), /holds 4 numbers, not twice its 3 runs/);
    fails(paxSparse(v01(`${'0,'.repeat(50)}2,3,10,2`, '20', '1'), 'abcXY'), /map of 108 bytes is too long for 1 runs/);
    fails(paxSparse(v01('2,x,10,2'), 'abcXY'), /invalid GNU.sparse.map/);
    fails(paxSparse(v01('2,3,10,2', '9007199254740993'), 'abcXY'), /too large/);
    fails(paxSparse([['GNU.sparse.size', '20'], ['GNU.sparse.numblocks', '2'], ['GNU.sparse.offset', '2'], ['GNU.sparse.offset', '10']], 'abcXY'), /out of turn/);
    fails(paxSparse([['GNU.sparse.size', '20'], ['GNU.sparse.numblocks', '2'], ['GNU.sparse.offset', '2,3,10'], ['GNU.sparse.numbytes', '2']], 'abcXY'), /invalid GNU.sparse.offset/);
    fails(paxSparse([['GNU.sparse.major', '2'], ['GNU.sparse.minor', '0']], 'abcXY'), /format 2\.0 is not supported/, UnsupportedError);
    fails(paxSparse(v01('2,3,10,2'), '', 'dir'), /GNU.sparse records on a dir/);
    fails(paxSparse(v01('2,3,10,2').filter(([k]) => k !== 'GNU.sparse.size'), 'abcXY'), /no GNU.sparse.size/);
    // PAX 1.0: the map in the data.
    fails(paxSparse(v10, Buffer.concat([map10('2\n2\nx\n10\n2\n'), Buffer.from('abcXY')])), /map is malformed/);
    fails(paxSparse(v10, Buffer.concat([map10('2\n2\n\n10\n2\n'), Buffer.from('abcXY')])), /map is malformed/);
    fails(paxSparse(v10, Buffer.concat([map10('2\n2\n3\n10\n3\n'), Buffer.from('abcXY')])), /places 6 bytes/);
    fails(paxSparse(v10, map10(`${'9'.repeat(7)}\n`)), /runs \(at most/);
    fails(paxSparse(v10, map10(`1\n${'9'.repeat(20)}\n0\n`)), /too large/);
    // A map whose block is more than the entry stores (its padding would be the next header).
    fails(paxSparse(v10, '1\n0\n0\n'), /map's 512 bytes are more than the 6 it stores/);
    // A map that goes on to the end of its entry's bytes (the next header is not read as map).
    fails(paxSparse(v10, `1000\n${'1\n'.repeat(200)}`), /does not end within 405 bytes/);
    // Old GNU: a run past the real size; runs out of order.
    fails(oldGnu([[2, 3], [19, 2]], 20, 'abcXY'), /end past its 20 bytes/);
    fails(oldGnu([[10, 2], [2, 3]], 20, 'XYabc'), /out of order/);
    fails(Buffer.concat([patchHeader(oldGnu([[2, 3]], 20, 'abc').subarray(0, TAR_BLOCK), (b) => b.write('ustar\x0000', 257, 'latin1')), Buffer.from('abc'), Buffer.alloc(509), TAR_END]), /sparse \('S'\) entry without the GNU header/);
    fails(Buffer.concat([metaBlocks('x', Buffer.concat(v01('2,3').map(([k, v]) => paxRecord(k, v)))), oldGnu([[2, 3]], 20, 'abc')]), /old GNU sparse entry with GNU.sparse records/);
  });

  test('encodeSparseTarHeaders writes what the parser and GNU tar read back, holes and long names included', async () => {
    const long = `${'d'.repeat(90)}/${'f'.repeat(60)}`;
    const cases: Array<{ path: string; size: number; runs: number[] }> = [
      { path: 's', size: 4000, runs: [512, 512, 2048, 5] },
      { path: 'dir/all-hole', size: 5000, runs: [] },
      { path: 'starts', size: 9000, runs: [0, 700] },
      { path: 'ends', size: 9000, runs: [8000, 1000] },
      { path: long, size: 1 << 20, runs: [4096, 4096, 500_000, 10] },
    ];
    const files = cases.map(({ path, size, runs }, k) => {
      const content = Buffer.alloc(size);
      const stored: Buffer[] = [];
      for (let i = 0; i < runs.length; i += 2) {
        const data = Buffer.alloc(runs[i + 1] as number, 0x41 + k + i);
        data.copy(content, runs[i] as number);
        stored.push(data);
      }
      const bytes = Buffer.concat(stored);
      const e = entry(path, 'file', { size, mode: 0o640, mtimeSec: 1_700_000_000 });
      return { e, content, tar: Buffer.concat([encodeSparseTarHeaders(e, runs), bytes, Buffer.alloc(tarPadding(bytes.length))]) };
    });
    const whole = Buffer.concat([...files.map((f) => f.tar), TAR_END]);
    for (const step of [whole.length, 1, 1000]) {
      const parsed = parseAll(whole, step);
      assert.deepEqual(parsed.map((p) => p.entry.path.toString()), cases.map((c) => c.path));
      parsed.forEach((p, i) => assert.ok(p.data.equals((files[i] as { content: Buffer }).content), `${cases[i]?.path}, step ${step}`));
    }
    await withTempDir('tar-sparse-write', async (dir) => {
      await writeFile(join(dir, 'a.tar'), whole);
      sh(`mkdir '${dir}/x' && tar -xf '${dir}/a.tar' -C '${dir}/x'`);
      for (const [i, c] of cases.entries()) {
        assert.ok((await readFile(join(dir, 'x', c.path))).equals((files[i] as { content: Buffer }).content), `GNU tar: ${c.path}`);
      }
      // Holes on disk too: a 1 MiB file with 4 KiB + 10 bytes of data takes a few blocks.
      assert.ok(Number(sh(`du -k '${dir}/x/${long}' | cut -f1`)) < 64);
    });
    // A run other than the last that is not whole blocks: GNU tar and Go would read it apart.
    assert.throws(() => encodeSparseTarHeaders(entry('odd', 'file', { size: 100 }), [0, 10, 50, 10]), RangeError);
  });

  test('an archive cut inside a sparse file\'s map, runs or trailing hole is truncated', () => {
    const whole = paxSparse(v10, Buffer.concat([map10('2\n2\n3\n10\n2\n'), Buffer.from('abcXY')]));
    const start = whole.indexOf('2\n2\n3\n');
    for (const at of [start + 3, start + TAR_BLOCK - 1, start + TAR_BLOCK + 2, start + TAR_BLOCK + 4]) {
      for (const step of [at, 1]) {
        const parser = new TarParser();
        for (let off = 0; off < at; off += step) parser.write(whole.subarray(off, Math.min(at, off + step)));
        assert.throws(() => parser.end(), (e: unknown) => e instanceof FormatError && /truncated/.test(e.message), `cut at ${at - start} (step ${step})`);
      }
    }
  });
});

describe('errors', () => {
  const items = [
    { entry: entry('a'.repeat(150), 'file', { size: 700, xattrs: [[Buffer.from('user.x'), Buffer.from('y')]] as Array<[Buffer, Buffer]> }), data: randomBytes(700) },
    { entry: entry('b', 'file', { size: 3 }), data: Buffer.from('bbb') },
  ];
  const bytes = archive(items);
  const firstHeaders = encodeTarHeaders(items[0]!.entry).length; // PAX header + PAX data + header

  test('truncated archives: end() throws a FormatError, wherever the cut falls inside an entry', () => {
    const cuts = {
      'inside the PAX header block': 100,
      'inside the PAX records': TAR_BLOCK + 10,
      'inside the entry header': firstHeaders - 200,
      'inside the file data': firstHeaders + 300,
      'inside the data padding': firstHeaders + 800,
      'inside the second header': firstHeaders + 1024 + 5,
      'inside the second data padding': firstHeaders + 1024 + TAR_BLOCK + 100,
    };
    for (const [where, at] of Object.entries(cuts)) {
      for (const step of [at, 1, 64]) {
        const parser = new TarParser();
        for (let off = 0; off < at; off += step) parser.write(bytes.subarray(off, Math.min(at, off + step)));
        assert.throws(() => parser.end(), (e: unknown) => e instanceof FormatError && /truncated/.test(e.message), `${where} (step ${step})`);
      }
    }
    // Cut exactly between entries or before the end marker: what is there is whole.
    assert.equal(parseAll(bytes.subarray(0, bytes.length - 2 * TAR_BLOCK)).length, 2);
    assert.equal(parseAll(bytes.subarray(0, bytes.length - TAR_BLOCK)).length, 2);
  });

  test('bad checksum, garbage, unknown types, huge metadata, bad octal, empty path', () => {
    const flipped = Buffer.from(bytes);
    flipped[3] = (flipped[3] as number) ^ 0x01; // inside the PAX header's name
    assert.throws(() => parseAll(flipped), (e: unknown) => e instanceof FormatError && /checksum/.test(e.message));
    const flippedChecksum = Buffer.from(bytes);
    flippedChecksum.write('000000\0 ', firstHeaders - TAR_BLOCK + 148, 'latin1'); // the entry header's checksum
    assert.throws(() => parseAll(flippedChecksum), FormatError);
    assert.throws(() => parseAll(randomBytes(4096)), FormatError);
    assert.throws(() => parseAll(Buffer.alloc(1024, 'not a tar archive\n')), FormatError);

    const typed = (flag: string): Buffer => Buffer.concat([patchHeader(encodeTarHeaders(entry('t', 'file')), (b) => b.write(flag, 156, 'latin1')), TAR_END]);
    assert.throws(() => parseAll(typed('Z')), UnsupportedError);
    assert.throws(() => parseAll(Buffer.concat([metaBlocks('x', paxRecord('GNU.sparse.major', '1')), encodeTarHeaders(entry('s', 'file')), TAR_END])), UnsupportedError);
    assert.deepEqual(parseAll(Buffer.concat([metaBlocks('V', Buffer.from('volume')), encodeTarHeaders(entry('after', 'dir')), TAR_END])).map((p) => p.entry.path.toString()), ['after']);

    // A metadata record claiming 1 GiB is refused at its header, before any allocation.
    const hugeMeta = patchHeader(encodeTarHeaders(entry('PaxHeaders/x', 'file')), (b) => {
      b.write('x', 156, 'latin1');
      b.write('10000000000\0', 124, 'latin1');
    });
    assert.throws(() => new TarParser().write(hugeMeta), (e: unknown) => e instanceof FormatError && /too large/.test(e.message));

    const badMode = patchHeader(encodeTarHeaders(entry('m', 'file')), (b) => b.write('0009999\0', 100, 'latin1'));
    assert.throws(() => parseAll(Buffer.concat([badMode, TAR_END])), FormatError);
    const noName = patchHeader(encodeTarHeaders(entry('x', 'file')), (b) => b.fill(0, 0, 100));
    assert.throws(() => parseAll(Buffer.concat([noName, TAR_END])), FormatError);
    // A header after a single zero block could hide entries from readers that stop there.
    assert.throws(() => parseAll(Buffer.concat([Buffer.alloc(TAR_BLOCK), encodeTarHeaders(entry('hidden', 'file')), TAR_END])), FormatError);
    // Bytes after the end marker are ignored, as GNU tar does.
    assert.equal(parseAll(Buffer.concat([bytes, randomBytes(1000)])).length, 2);
  });

  test("'..' and absolute paths pass through the parser untouched (the builder decides)", () => {
    const bytes2 = archive([{ entry: entry('../escape', 'file') }, { entry: entry('/etc/x', 'file') }, { entry: entry('a/../../b', 'symlink', { linkpath: Buffer.from('../../..') }) }]);
    assert.deepEqual(parseAll(bytes2).map((p) => p.entry.path.toString()), ['../escape', '/etc/x', 'a/../../b']);
  });
});

describe('GNU tar reads what encodeTarHeaders writes', () => {
  test('tar tvf lists every entry as encoded; tar --xattrs -xpf restores it', async () => {
    await withTempDir('tar-gnu-read', async (dir) => {
      const longDir = `${'L'.repeat(120)}/${'M'.repeat(120)}`;
      const longFile = `${longDir}/${'f'.repeat(200)}`;
      const bin = Buffer.from([0x00, 0x0a, 0x01, 0x02, 0xff, 0x0a, 0x00]);
      const big = randomBytes(70_000);
      const items: Array<{ entry: TarEntry; data?: Buffer }> = [
        { entry: entry(`${'L'.repeat(120)}/`, 'dir') },
        { entry: entry(`${longDir}/`, 'dir') },
        { entry: entry(longFile, 'file', { size: big.length, uid: 3_000_000, gid: 4_000_000, mtimeNsec: 123_456_789 }), data: big },
        // GNU tar sets a directory's attributes once it extracts something outside it: keep d/ together.
        { entry: entry('d/', 'dir', { mode: 0o750, mtimeSec: 1_500_000_000 }) },
        { entry: entry(`d/${'h'.repeat(110)}`, 'hardlink', { linkpath: Buffer.from(longFile), uid: 3_000_000, gid: 4_000_000, mtimeNsec: 123_456_789 }) },
        { entry: entry('d/sym', 'symlink', { mode: 0o777, linkpath: Buffer.from(`../${'t'.repeat(150)}`) }) },
        { entry: entry('d/setuid', 'file', { mode: 0o4755, size: 3 }), data: Buffer.from('#!\n') },
        { entry: entry('d/sticky', 'dir', { mode: 0o1777 }) },
        { entry: entry('d/null', 'char', { mode: 0o666, devmajor: 1, devminor: 3 }) },
        { entry: entry('d/blk', 'block', { mode: 0o640, devmajor: 300, devminor: 70_000 }) },
        { entry: entry('d/fifo', 'fifo', { mode: 0o600, mtimeNsec: 5 }) },
        {
          entry: entry('d/xattrs', 'file', {
            size: 6,
            xattrs: [
              [Buffer.from('user.bin'), bin],
              [Buffer.from('user.text'), Buffer.from('a=b c\n')],
              [Buffer.from('trusted.t'), Buffer.from([0x0a])],
            ],
          }),
          data: Buffer.from('xattr\n'),
        },
      ];
      const file = join(dir, 'enc.tar');
      await writeFile(file, archive(items));
      assert.deepEqual(gnuList(file), items.map((i) => gnuLine(i.entry)));

      const out = join(dir, 'out');
      await mkdir(out);
      sh(`cd '${out}' && tar --xattrs --xattrs-include='*' --numeric-owner -xpf '${file}'`);
      const st = async (p: string): Promise<BigIntStats> => lstat(join(out, p), { bigint: true });
      const f = await st(longFile);
      assert.ok(f.isFile());
      assert.deepEqual(await readFile(join(out, longFile)), big);
      assert.equal(f.uid, 3_000_000n);
      assert.equal(f.gid, 4_000_000n);
      assert.equal(f.mtimeNs, 1_600_000_000_123_456_789n);
      const h = await st(`d/${'h'.repeat(110)}`);
      assert.equal(h.ino, f.ino, 'hardlink shares the inode');
      assert.equal(f.nlink, 2n);
      assert.equal(await readlink(join(out, 'd/sym')), `../${'t'.repeat(150)}`);
      assert.equal((await st('d/setuid')).mode & 0o7777n, 0o4755n);
      assert.equal((await st('d/sticky')).mode & 0o7777n, 0o1777n);
      const nul = await st('d/null');
      assert.ok(nul.isCharacterDevice());
      assert.deepEqual(majorMinor(nul.rdev), [1, 3]);
      const blk = await st('d/blk');
      assert.ok(blk.isBlockDevice());
      assert.deepEqual(majorMinor(blk.rdev), [300, 70_000]);
      const fifo = await st('d/fifo');
      assert.ok(fifo.isFIFO());
      assert.equal(fifo.mtimeNs, 1_600_000_000_000_000_005n);
      const xp = join(out, 'd/xattrs');
      assert.deepEqual(native.lgetxattr(xp, 'user.bin'), bin);
      assert.deepEqual(native.lgetxattr(xp, 'user.text'), Buffer.from('a=b c\n'));
      assert.deepEqual(native.lgetxattr(xp, 'trusted.t'), Buffer.from([0x0a]));
      // Directory attributes last: GNU tar sets them after the directory's contents.
      const d = await st('d');
      assert.equal(d.mode & 0o7777n, 0o750n);
      assert.equal(d.mtimeNs, 1_500_000_000_000_000_000n);
    });
  });
});
