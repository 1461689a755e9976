/**
 * The tar format of OCI layers: a pure push parser (bytes in, entry events out) and an entry
 * encoder. Handles ustar, GNU long names (L/K), PAX extended headers with binary-safe values
 * (SCHILY.xattr.*, LIBARCHIVE.xattr.*, mtime with nanoseconds, sizes and ids past the octal
 * fields), base-256 numbers, and sparse files in each of GNU tar's formats (as Go's archive/tar
 * reads them): old GNU ('S' entries, the map in the header and extension blocks), PAX 0.0 and 0.1
 * (the map in PAX records) and PAX 1.0 (the map at the start of the entry's data). Every length is
 * checked; a truncated or malformed archive gives a FormatError, never a hang or a huge allocation.
 */
import { FormatError, UnsupportedError } from '../base/index.js';

export const TAR_BLOCK = 512;

export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarEntry {
  /** Raw path bytes as stored (may start with "./", may end with "/"). */
  path: Buffer;
  type: TarEntryType;
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Hardlink or symlink target. */
  linkpath: Buffer;
  devmajor: number;
  devminor: number;
  /** Extended attributes, names and values as raw bytes, in archive order. */
  xattrs: Array<[Buffer, Buffer]>;
}

/**
 * An entry's events: its data comes as `data` views of the input, and, for a sparse file, as
 * `hole`s, runs of zeros the archive does not hold; together they are `entry.size` bytes.
 */
export type TarEvent =
  | { kind: 'entry'; entry: TarEntry }
  | { kind: 'data'; bytes: Uint8Array }
  | { kind: 'hole'; length: number }
  | { kind: 'entry-end' };

/** Metadata records (PAX, GNU long names) are bounded: 16 MiB is far above any real one. */
const MAX_META_RECORD = 16 << 20;

/** What global PAX records may hold (they apply to every later entry: GNU tar writes a comment). */
const PAX_GLOBAL_LIMIT = { keys: 1024, bytes: 1 << 20 };
/** What the extended records before one entry may hold (its xattrs, long names). */
const PAX_LOCAL_LIMIT = { keys: 65_536, bytes: MAX_META_RECORD };

/**
 * At most this many data runs in one sparse file's map (two numbers each while it streams; GNU tar
 * writes one run per stretch of data between holes).
 */
const MAX_SPARSE_RUNS = 1 << 20;

/** Where the old GNU header keeps its sparse map (GNU tar's `struct oldgnu_header`). */
const OLDGNU_SPARSE_AT = 386;
const OLDGNU_SPARSES = 4;
const OLDGNU_IS_EXTENDED = 482;
const OLDGNU_REALSIZE = 483;
/** An extension block of the old GNU sparse map: 21 runs, then its own is-extended flag. */
const SPARSE_EXT_RUNS = 21;
const SPARSE_EXT_IS_EXTENDED = 504;

/** The PAX keys an entry's fields come from (`TarParser.entry`); others are dropped when read. */
function usedPaxKey(k: string): boolean {
  return (
    k === 'path' ||
    k === 'linkpath' ||
    k === 'size' ||
    k === 'uid' ||
    k === 'gid' ||
    k === 'mtime' ||
    k === 'SCHILY.devmajor' ||
    k === 'SCHILY.devminor' ||
    k.startsWith('SCHILY.xattr.') ||
    k.startsWith('LIBARCHIVE.xattr.') ||
    k.startsWith('GNU.sparse.')
  );
}

function isZeroBlock(b: Uint8Array): boolean {
  for (let i = 0; i < TAR_BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

function field(b: Buffer, off: number, len: number): Buffer {
  const f = b.subarray(off, off + len);
  const nul = f.indexOf(0);
  return nul >= 0 ? f.subarray(0, nul) : f;
}

/**
 * A numeric header field: octal text, or base-256 when the high bit of the first byte is set
 * (0xff first: a negative number in two's complement, as GNU tar writes a time before 1970;
 * only `signed` fields may be negative).
 */
function numeric(b: Buffer, off: number, len: number, name: string, signed = false): number {
  const first = b[off] as number;
  if (first & 0x80) {
    if (first === 0xff && !signed) throw new FormatError(`tar header: negative ${name}`);
    let v = 0n;
    for (let i = 0; i < len; i++) v = (v << 8n) | BigInt(b[off + i] as number);
    const bits = BigInt(8 * len);
    v = first === 0xff ? v - (1n << bits) : v & ((1n << (bits - 1n)) - 1n);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(`tar header: ${name} too ${v > 0n ? 'large' : 'small'}`);
    return Number(v);
  }
  const text = field(b, off, len).toString('latin1').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new FormatError(`tar header: invalid ${name} field ${JSON.stringify(text)}`);
  const v = parseInt(text, 8);
  if (!Number.isSafeInteger(v)) throw new FormatError(`tar header: ${name} too large`);
  return v;
}

function checksumOk(b: Buffer): boolean {
  const stored = numeric(b, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < TAR_BLOCK; i++) {
    const x = i >= 148 && i < 156 ? 0x20 : (b[i] as number);
    unsigned += x;
    signed += x > 127 ? x - 256 : x;
  }
  return stored === unsigned || stored === signed;
}

/** Whether `block` (512 bytes) is a tar header: its checksum holds (any tar format, v7 included). */
export function isTarHeader(block: Uint8Array): boolean {
  if (block.length !== TAR_BLOCK) return false;
  try {
    return checksumOk(Buffer.from(block.buffer, block.byteOffset, block.length));
  } catch {
    return false; // the checksum field is not octal
  }
}

/** Parses PAX records "LEN KEY=VALUE\n" with binary-safe values (a key given twice: the last). */
export function parsePax(data: Buffer): Map<string, Buffer> {
  return new Map(paxRecords(data));
}

/** PAX records "LEN KEY=VALUE\n" in order, with binary-safe values. */
function* paxRecords(data: Buffer): Generator<[string, Buffer]> {
  let p = 0;
  while (p < data.length) {
    if (data[p] === 0) break; // zero padding
    const sp = data.indexOf(0x20, p);
    if (sp < 0 || sp - p > 20) throw new FormatError('tar PAX header: malformed record length');
    const len = Number(data.subarray(p, sp).toString('latin1'));
    if (!Number.isSafeInteger(len) || len <= sp - p + 1 || p + len > data.length || data[p + len - 1] !== 0x0a) {
      throw new FormatError('tar PAX header: malformed record');
    }
    const rec = data.subarray(sp + 1, p + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new FormatError('tar PAX header: record without a key');
    p += len; // before the yield: a consumer that stops early leaves nothing half-read
    yield [rec.subarray(0, eq).toString('utf8'), rec.subarray(eq + 1)];
  }
}

/**
 * A SCHILY.xattr keyword's name as GNU tar writes it: '%' and '=' (the record's separator) as
 * %25 and %3D, nothing else escaped (xheader.c, xattr_encode_keyword).
 */
function decodeGnuXattrKeyword(s: string): string {
  return s.replace(/%(25|3D)/g, (_, h: string) => (h === '25' ? '%' : '='));
}

function encodeGnuXattrKeyword(s: string): string {
  return s.replace(/%/g, '%25').replace(/=/g, '%3D');
}

/**
 * A LIBARCHIVE.xattr keyword's name: URL-encoded bytes, decoded over the keyword's UTF-8 bytes
 * (a character outside the BMP is two UTF-16 units but one run of bytes).
 */
function percentDecode(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const out: number[] = [];
  for (let i = 0; i < b.length; i++) {
    if (b[i] !== 0x25) {
      out.push(b[i] as number);
      continue;
    }
    const hex = b.subarray(i + 1, i + 3).toString('latin1');
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new FormatError(`tar PAX header: invalid escape in LIBARCHIVE.xattr.${s}`);
    out.push(parseInt(hex, 16));
    i += 2;
  }
  return Buffer.from(out);
}

/** Up to `count` (offset, length) runs of an old GNU sparse map at `at` of `block`; an empty offset ends them. */
function sparseRuns(block: Buffer, at: number, count: number, runs: number[]): void {
  for (let i = 0; i < count; i++) {
    const off = at + 24 * i;
    if (block[off] === 0) return;
    if (runs.length === 2 * MAX_SPARSE_RUNS) throw new FormatError(`tar sparse entry: its map has more than ${MAX_SPARSE_RUNS} runs`);
    runs.push(numeric(block, off, 12, 'sparse offset'), numeric(block, off + 12, 12, 'sparse length'));
  }
}

/**
 * The sparse map the GNU.sparse PAX records give a file (formats 0.0, gathered into a map, and
 * 0.1), or 'in-data' (1.0: the map starts its data), or undefined when there are none. Sets the
 * entry's name and size to the file's (GNU.sparse.name, GNU.sparse.size or realsize).
 */
function paxSparse(pax: Map<string, Buffer>, entry: TarEntry): number[] | 'in-data' | undefined {
  let any = false;
  for (const k of pax.keys()) any ||= k.startsWith('GNU.sparse.');
  if (!any) return undefined;
  const what = JSON.stringify(entry.path.toString());
  if (entry.type !== 'file') throw new FormatError(`tar entry ${what}: GNU.sparse records on a ${entry.type}`);
  const get = (k: string): Buffer | undefined => pax.get(`GNU.sparse.${k}`);
  const major = get('major')?.toString('latin1');
  const minor = get('minor')?.toString('latin1');
  let v1: boolean;
  if (major === '1' && minor === '0') v1 = true;
  else if (major === '0' && (minor === '0' || minor === '1')) v1 = false;
  else if (major === undefined && minor === undefined && get('map') !== undefined) v1 = false; // 0.0 and 0.1 name no version
  else throw new UnsupportedError(`tar entry ${what}: GNU sparse format ${major ?? '?'}.${minor ?? '?'} is not supported`);
  const name = get('name');
  if (name !== undefined && name.length > 0) entry.path = name;
  const size = get('size') ?? get('realsize');
  if (size === undefined) throw new FormatError(`tar sparse entry ${what}: no GNU.sparse.size or GNU.sparse.realsize record`);
  entry.size = paxNumber(size, 'GNU.sparse.size');
  if (v1) return 'in-data';
  const map = get('map');
  const numblocks = get('numblocks');
  if (map === undefined || numblocks === undefined) throw new FormatError(`tar sparse entry ${what}: no GNU.sparse.map or GNU.sparse.numblocks record`);
  const n = paxNumber(numblocks, 'GNU.sparse.numblocks');
  if (n > MAX_SPARSE_RUNS) throw new FormatError(`tar sparse entry ${what}: its map has ${n} runs (at most ${MAX_SPARSE_RUNS})`);
  // At most 20 digits and a comma a number: a longer map is refused before it is split.
  if (map.length > 2 * n * 21) throw new FormatError(`tar sparse entry ${what}: its map of ${map.length} bytes is too long for ${n} runs`);
  const nums = map.length === 0 ? [] : map.toString('latin1').split(',');
  if (nums.length !== 2 * n) throw new FormatError(`tar sparse entry ${what}: its map holds ${nums.length} numbers, not twice its ${n} runs`);
  return nums.map((v) => paxNumber(Buffer.from(v, 'latin1'), 'GNU.sparse.map'));
}

function paxNumber(v: Buffer, key: string): number {
  const s = v.toString('latin1');
  if (!/^\d+$/.test(s)) throw new FormatError(`tar PAX header: invalid ${key} ${JSON.stringify(s)}`);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new FormatError(`tar PAX header: ${key} too large`);
  return n;
}

/**
 * "SECONDS[.FRACTION]" to seconds and nanoseconds, the nanoseconds always counting forward: a time
 * before 1970, "-1.25", is { sec: -2, nsec: 750000000 }.
 */
function paxTime(v: Buffer): { sec: number; nsec: number } {
  const s = v.toString('latin1');
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(s);
  if (m === null) throw new FormatError(`tar PAX header: invalid mtime ${JSON.stringify(s)}`);
  const whole = Number(m[2]);
  if (!Number.isSafeInteger(whole)) throw new FormatError('tar PAX header: mtime out of range');
  const frac = m[3] === undefined ? 0 : Number((m[3] + '000000000').slice(0, 9));
  if (m[1] !== '-') return { sec: whole, nsec: frac };
  return frac === 0 ? { sec: -whole, nsec: 0 } : { sec: -whole - 1, nsec: 1_000_000_000 - frac };
}

/** Seconds and forward-counting nanoseconds as a PAX time ("-1.250000000" for { sec: -2, nsec: 750000000 }). */
export function paxTimeText(sec: number, nsec: number): string {
  if (sec >= 0 || nsec === 0) return `${sec}.${String(nsec).padStart(9, '0')}`;
  return `-${-(sec + 1)}.${String(1_000_000_000 - nsec).padStart(9, '0')}`;
}

function typeOf(flag: number): TarEntryType | 'meta' | 'skip' {
  switch (String.fromCharCode(flag)) {
    case '0':
    case '\0':
    case '7':
    case 'S': // an old GNU sparse file
      return 'file';
    case '1':
      return 'hardlink';
    case '2':
      return 'symlink';
    case '3':
      return 'char';
    case '4':
      return 'block';
    case '5':
      return 'dir';
    case '6':
      return 'fifo';
    case 'x':
    case 'g':
    case 'L':
    case 'K':
      return 'meta';
    case 'V':
      return 'skip';
    default:
      throw new UnsupportedError(`tar entry type ${JSON.stringify(String.fromCharCode(flag))} is not supported`);
  }
}

/**
 * A sparse file streaming: `runs` (offset, length pairs, in file order) say where the stored
 * bytes go; `pos` is how far into the file the events went, always inside run `i` while input is
 * needed. `pad` follows the stored bytes.
 */
interface SparseState {
  s: 'sparse';
  runs: number[];
  i: number;
  pos: number;
  size: number;
  pad: number;
}

/** What a sparse entry's map is still to come from, and what to check it against. */
interface SparsePending {
  what: string;
  /** The file's size. */
  size: number;
  /** The bytes the archive stores for it (its map's, for PAX 1.0, and its data). */
  stored: number;
  pad: number;
}

/** PAX 1.0: the map at the start of the data, decimal numbers each ending in a newline. */
interface SparseMapState extends SparsePending {
  s: 'sparse-map';
  /** The map's numbers so far (after the count). */
  nums: number[];
  /** How many numbers the map holds: twice its first number (undefined until it is read). */
  want: number | undefined;
  digits: string;
  /** Map bytes read. */
  read: number;
}

type State =
  | { s: 'header' }
  | { s: 'meta'; flag: string; left: number; pad: number; parts: Buffer[] }
  | { s: 'data'; left: number; pad: number }
  | { s: 'skip'; left: number }
  | ({ s: 'sparse-ext'; runs: number[] } & SparsePending)
  | SparseMapState
  | SparseState
  | { s: 'end' };

/**
 * Push parser: feed bytes with `write`, get events; call `end` when the input is exhausted.
 * Data events are views into the input chunks, valid until the next `write`.
 */
export class TarParser {
  private state: State = { s: 'header' };
  private pending: Buffer = Buffer.alloc(0);
  private global = new Map<string, Buffer>();
  private local = new Map<string, Buffer>();
  /** Bytes (keys and values) the two maps hold. */
  private globalBytes = 0;
  private localBytes = 0;
  private longName: Buffer | undefined;
  private longLink: Buffer | undefined;
  private sawEnd = false;

  write(chunk: Uint8Array): TarEvent[] {
    const events: TarEvent[] = [];
    let buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    while (buf.length > 0) {
      const st = this.state;
      if (st.s === 'end') break; // trailing bytes after the end marker are ignored, as tar does
      if (st.s === 'data') {
        if (st.left > 0) {
          const n = Math.min(st.left, buf.length);
          events.push({ kind: 'data', bytes: buf.subarray(0, n) });
          st.left -= n;
          buf = buf.subarray(n);
          if (st.left > 0) continue;
        }
        const n = Math.min(st.pad, buf.length);
        st.pad -= n;
        buf = buf.subarray(n);
        if (st.pad === 0) {
          events.push({ kind: 'entry-end' });
          this.state = { s: 'header' };
        }
        continue;
      }
      if (st.s === 'skip') {
        const n = Math.min(st.left, buf.length);
        st.left -= n;
        buf = buf.subarray(n);
        if (st.left === 0) this.state = { s: 'header' };
        continue;
      }
      if (st.s === 'meta') {
        const n = Math.min(st.left + st.pad, buf.length);
        const take = Math.min(st.left, n);
        if (take > 0) st.parts.push(Buffer.from(buf.subarray(0, take)));
        st.left -= take;
        st.pad -= n - take;
        buf = buf.subarray(n);
        if (st.left === 0 && st.pad === 0) this.finishMeta(st.flag, Buffer.concat(st.parts));
        continue;
      }
      if (st.s === 'sparse') {
        const n = Math.min((st.runs[st.i] as number) + (st.runs[st.i + 1] as number) - st.pos, buf.length);
        events.push({ kind: 'data', bytes: buf.subarray(0, n) });
        st.pos += n;
        buf = buf.subarray(n);
        this.sparseStep(st, events);
        continue;
      }
      if (st.s === 'sparse-map') {
        buf = buf.subarray(this.sparseMap(st, buf, events));
        continue;
      }
      // a header or a sparse map's extension block: gather a whole block
      let block: Buffer;
      const need = TAR_BLOCK - this.pending.length;
      if (this.pending.length > 0 || buf.length < TAR_BLOCK) {
        this.pending = Buffer.concat([this.pending, buf.subarray(0, need)]);
        buf = buf.subarray(Math.min(need, buf.length));
        if (this.pending.length < TAR_BLOCK) continue;
        block = this.pending;
        this.pending = Buffer.alloc(0);
      } else {
        block = buf.subarray(0, TAR_BLOCK);
        buf = buf.subarray(TAR_BLOCK);
      }
      if (st.s === 'sparse-ext') this.sparseExtension(st, block, events);
      else this.header(block, events);
    }
    return events;
  }

  /** Checks that the archive ended cleanly (not inside an entry). */
  end(): void {
    const st = this.state;
    if ((st.s !== 'header' && st.s !== 'end') || this.pending.length > 0) {
      throw new FormatError('tar archive is truncated');
    }
  }

  private header(block: Buffer, events: TarEvent[]): void {
    if (isZeroBlock(block)) {
      // Two zero blocks end the archive; a single one at EOF is tolerated.
      if (this.sawEnd) this.state = { s: 'end' };
      this.sawEnd = true;
      return;
    }
    if (this.sawEnd) throw new FormatError('tar archive: data after a zero block');
    if (!checksumOk(block)) throw new FormatError('tar header checksum mismatch (not a tar archive, or corrupt)');
    const flag = block[156] as number;
    const type = typeOf(flag);
    const size = numeric(block, 124, 12, 'size');
    if (type === 'meta') {
      if (size > MAX_META_RECORD) throw new FormatError(`tar metadata record of ${size} bytes is too large`);
      const pad = (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
      this.state = { s: 'meta', flag: String.fromCharCode(flag), left: size, pad, parts: [] };
      if (size === 0) this.finishMeta(String.fromCharCode(flag), Buffer.alloc(0));
      return;
    }
    if (type === 'skip') {
      this.state = { s: 'skip', left: size + ((TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK) };
      return;
    }
    const { entry, stored, sparse } = this.entry(block, type, flag, size);
    events.push({ kind: 'entry', entry });
    // Non-file entries may still carry data blocks in odd archives; skip them.
    const carried = entry.type === 'file' ? stored : size;
    const pad = tarPadding(carried);
    if (entry.type !== 'file' && carried > 0) {
      this.state = { s: 'skip', left: carried + pad };
      events.push({ kind: 'entry-end' });
      return;
    }
    if (sparse !== undefined) {
      const p: SparsePending = { what: JSON.stringify(entry.path.toString()), size: entry.size, stored, pad };
      if (sparse === 'in-data') {
        this.state = { s: 'sparse-map', ...p, nums: [], want: undefined, digits: '', read: 0 };
      } else if (sparse === 'oldgnu') {
        const runs: number[] = [];
        sparseRuns(block, OLDGNU_SPARSE_AT, OLDGNU_SPARSES, runs);
        if (block[OLDGNU_IS_EXTENDED] !== 0) this.state = { s: 'sparse-ext', ...p, runs };
        else this.startSparse(runs, p, events);
      } else {
        this.startSparse(sparse, p, events);
      }
      return;
    }
    this.dataDone(stored, pad, events);
  }

  /** Goes on to an entry's last `left` data bytes and `pad` (its end, when there are none). */
  private dataDone(left: number, pad: number, events: TarEvent[]): void {
    if (left === 0 && pad === 0) {
      events.push({ kind: 'entry-end' });
      this.state = { s: 'header' };
    } else {
      this.state = { s: 'data', left, pad };
    }
  }

  /** An old GNU sparse map's extension block: more runs, and whether another block follows. */
  private sparseExtension(st: Extract<State, { s: 'sparse-ext' }>, block: Buffer, events: TarEvent[]): void {
    sparseRuns(block, 0, SPARSE_EXT_RUNS, st.runs);
    if (block[SPARSE_EXT_IS_EXTENDED] === 0) this.startSparse(st.runs, st, events);
  }

  /**
   * PAX 1.0: reads the map at the start of the entry's data (the number of runs, then each run's
   * offset and length, every number ending in a newline, padded to a whole block), then goes on
   * to the runs. Returns how many bytes of `buf` it took.
   */
  private sparseMap(st: SparseMapState, buf: Buffer, events: TarEvent[]): number {
    let k = 0;
    for (;;) {
      if (st.nums.length === st.want) {
        const end = st.read + tarPadding(st.read);
        if (end > st.stored) throw new FormatError(`tar sparse entry ${st.what}: its map's ${end} bytes are more than the ${st.stored} it stores`);
        const take = Math.min(end - st.read, buf.length - k);
        st.read += take;
        k += take;
        if (st.read === end) this.startSparse(st.nums, { ...st, stored: st.stored - end }, events);
        return k;
      }
      if (k === buf.length) return k;
      if (st.read === st.stored || st.read === MAX_META_RECORD) throw new FormatError(`tar sparse entry ${st.what}: its map does not end within ${st.read} bytes`);
      const c = buf[k++] as number;
      st.read++;
      if (c === 0x0a && st.digits !== '') {
        const v = Number(st.digits);
        if (!Number.isSafeInteger(v)) throw new FormatError(`tar sparse entry ${st.what}: a number of its map is too large`);
        st.digits = '';
        if (st.want !== undefined) st.nums.push(v);
        else if (v <= MAX_SPARSE_RUNS) st.want = 2 * v;
        else throw new FormatError(`tar sparse entry ${st.what}: its map has ${v} runs (at most ${MAX_SPARSE_RUNS})`);
      } else if (c >= 0x30 && c <= 0x39 && st.digits.length < 20) {
        st.digits += String.fromCharCode(c);
      } else {
        throw new FormatError(`tar sparse entry ${st.what}: its map is malformed`);
      }
    }
  }

  /** Checks a sparse file's map and streams its runs. */
  private startSparse(runs: number[], p: SparsePending, events: TarEvent[]): void {
    let end = 0;
    let stored = 0;
    for (let i = 0; i < runs.length; i += 2) {
      const offset = runs[i] as number;
      const length = runs[i + 1] as number;
      if (offset < end || offset + length > p.size) {
        throw new FormatError(`tar sparse entry ${p.what}: its runs overlap, are out of order or end past its ${p.size} bytes`);
      }
      end = offset + length;
      stored += length;
    }
    if (stored !== p.stored) throw new FormatError(`tar sparse entry ${p.what}: its map places ${stored} bytes, the archive holds ${p.stored}`);
    const st: SparseState = { s: 'sparse', runs, i: 0, pos: 0, size: p.size, pad: p.pad };
    this.state = st;
    this.sparseStep(st, events);
  }

  /**
   * Moves a sparse file on as far as it goes without input: the hole before the next run, runs
   * of no bytes, the hole at its end and then its padding.
   */
  private sparseStep(st: SparseState, events: TarEvent[]): void {
    for (; st.i < st.runs.length; st.i += 2) {
      const offset = st.runs[st.i] as number;
      if (st.pos < offset) {
        events.push({ kind: 'hole', length: offset - st.pos });
        st.pos = offset;
      }
      if (st.pos < offset + (st.runs[st.i + 1] as number)) return; // its bytes are to come
    }
    if (st.pos < st.size) events.push({ kind: 'hole', length: st.size - st.pos });
    st.pos = st.size;
    this.dataDone(0, st.pad, events);
  }

  private finishMeta(flag: string, data: Buffer): void {
    this.state = { s: 'header' };
    if (flag === 'L') this.longName = field(data, 0, data.length);
    else if (flag === 'K') this.longLink = field(data, 0, data.length);
    else {
      // Only the keys an entry uses are kept, copied out of the record (a view would keep the
      // whole record), within a bound: global records apply to every later entry, and extended
      // ones pile up until an entry comes; neither may grow with the archive.
      const global = flag === 'g';
      const target = global ? this.global : this.local;
      const limit = global ? PAX_GLOBAL_LIMIT : PAX_LOCAL_LIMIT;
      let bytes = global ? this.globalBytes : this.localBytes;
      const put = (k: string, v: Buffer): void => {
        const old = target.get(k);
        if (old !== undefined) bytes -= k.length + old.length;
        target.set(k, Buffer.from(v));
        bytes += k.length + v.length;
        if (bytes > limit.bytes || target.size > limit.keys) {
          throw new FormatError(`tar archive: ${global ? 'global' : 'extended'} PAX records hold more than ${limit.keys} keys or ${limit.bytes} bytes`);
        }
      };
      // GNU sparse format 0.0 gives a map as repeated offset and numbytes records, in turn: they
      // are gathered into one GNU.sparse.map, the record of format 0.1 (as Go's archive/tar).
      const map: string[] = [];
      let mapBytes = 0;
      for (const [k, v] of paxRecords(data)) {
        if (!usedPaxKey(k)) continue;
        if (k.startsWith('GNU.sparse.') && global) continue; // a sparse map is one file's
        if (k === 'GNU.sparse.offset' || k === 'GNU.sparse.numbytes') {
          if ((k === 'GNU.sparse.offset') !== (map.length % 2 === 0)) throw new FormatError('tar PAX header: GNU.sparse.offset and GNU.sparse.numbytes records out of turn');
          if (!/^\d+$/.test(v.toString('latin1'))) throw new FormatError(`tar PAX header: invalid ${k} ${JSON.stringify(v.toString('latin1'))}`);
          map.push(v.toString('latin1'));
          mapBytes += v.length + 1;
          if (bytes + mapBytes > limit.bytes) throw new FormatError(`tar archive: extended PAX records hold more than ${limit.bytes} bytes`);
          continue;
        }
        put(k, v);
      }
      if (map.length > 0) put('GNU.sparse.map', Buffer.from(map.join(','), 'latin1'));
      if (global) this.globalBytes = bytes;
      else this.localBytes = bytes;
    }
  }

  /**
   * The entry a header (with the records before it) describes, the bytes the archive stores for
   * it, and, for a sparse file, where its map is: given (PAX 0.x), in its header (old GNU) or at
   * the start of its data (PAX 1.0). A sparse entry's size is its file's.
   */
  private entry(b: Buffer, type: TarEntryType, flag: number, headerSize: number): { entry: TarEntry; stored: number; sparse: number[] | 'oldgnu' | 'in-data' | undefined } {
    const magic = b.subarray(257, 263).toString('latin1');
    let path: Buffer = Buffer.from(field(b, 0, 100));
    if (magic === 'ustar\0') {
      const prefix = field(b, 345, 155);
      if (prefix.length > 0) path = Buffer.concat([prefix, Buffer.from('/'), path]);
    }
    let linkpath: Buffer = Buffer.from(field(b, 157, 100));
    if (this.longName !== undefined) path = this.longName;
    if (this.longLink !== undefined) linkpath = this.longLink;
    const pax = this.global.size === 0 ? this.local : new Map([...this.global, ...this.local]);
    this.local = new Map();
    this.localBytes = 0;
    this.longName = undefined;
    this.longLink = undefined;

    const entry: TarEntry = {
      path,
      type,
      mode: numeric(b, 100, 8, 'mode') & 0o7777,
      uid: numeric(b, 108, 8, 'uid'),
      gid: numeric(b, 116, 8, 'gid'),
      size: headerSize,
      mtimeSec: numeric(b, 136, 12, 'mtime', true),
      mtimeNsec: 0,
      linkpath,
      devmajor: type === 'char' || type === 'block' ? numeric(b, 329, 8, 'devmajor') : 0,
      devminor: type === 'char' || type === 'block' ? numeric(b, 337, 8, 'devminor') : 0,
      xattrs: [],
    };
    for (const [key, v] of pax) {
      if (key === 'path') entry.path = v;
      else if (key === 'linkpath') entry.linkpath = v;
      else if (key === 'size') entry.size = paxNumber(v, key);
      else if (key === 'uid') entry.uid = paxNumber(v, key);
      else if (key === 'gid') entry.gid = paxNumber(v, key);
      else if (key === 'mtime') {
        const t = paxTime(v);
        entry.mtimeSec = t.sec;
        entry.mtimeNsec = t.nsec;
      } else if (key === 'SCHILY.devmajor') entry.devmajor = paxNumber(v, key);
      else if (key === 'SCHILY.devminor') entry.devminor = paxNumber(v, key);
      else if (key.startsWith('SCHILY.xattr.')) entry.xattrs.push([Buffer.from(decodeGnuXattrKeyword(key.slice(13)), 'utf8'), v]);
      else if (key.startsWith('LIBARCHIVE.xattr.')) entry.xattrs.push([percentDecode(key.slice(17)), Buffer.from(v.toString('latin1'), 'base64')]);
    }
    if (type === 'file' && headerSize !== entry.size && !pax.has('size')) {
      throw new FormatError('tar entry size mismatch');
    }
    const stored = entry.size;
    let sparse: number[] | 'oldgnu' | 'in-data' | undefined = paxSparse(pax, entry);
    if (flag === 0x53) {
      // Only the old GNU header has a sparse map (where ustar keeps its path prefix).
      if (b.subarray(257, 265).toString('latin1') !== 'ustar  \0') throw new FormatError(`tar entry ${JSON.stringify(entry.path.toString())}: a sparse ('S') entry without the GNU header`);
      if (sparse !== undefined) throw new FormatError(`tar entry ${JSON.stringify(entry.path.toString())}: an old GNU sparse entry with GNU.sparse records`);
      entry.size = numeric(b, OLDGNU_REALSIZE, 12, 'realsize');
      sparse = 'oldgnu';
    }
    if (entry.path.length === 0) throw new FormatError('tar entry with an empty path');
    return { entry, stored, sparse };
  }
}

/** Formats a PAX record "LEN KEY=VALUE\n" (LEN counts itself). */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), 'latin1'), body]);
}

function octal(b: Buffer, off: number, len: number, v: number): boolean {
  if (v < 0) return false;
  const s = v.toString(8);
  if (s.length > len - 1) return false;
  b.write(s.padStart(len - 1, '0') + '\0', off, 'latin1');
  return true;
}

const TYPEFLAG: Record<TarEntryType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};

function rawHeader(name: Buffer, e: Omit<TarEntry, 'path' | 'xattrs'>, flag: string, size: number, pax: Array<[string, Buffer]>): Buffer {
  const b = Buffer.alloc(TAR_BLOCK);
  name.subarray(0, 100).copy(b, 0);
  if (!octal(b, 100, 8, e.mode & 0o7777)) throw new RangeError('mode');
  if (!octal(b, 108, 8, e.uid)) pax.push(['uid', Buffer.from(String(e.uid))]), octal(b, 108, 8, 0);
  if (!octal(b, 116, 8, e.gid)) pax.push(['gid', Buffer.from(String(e.gid))]), octal(b, 116, 8, 0);
  if (!octal(b, 124, 12, size)) pax.push(['size', Buffer.from(String(size))]), octal(b, 124, 12, 0);
  if (!octal(b, 136, 12, e.mtimeSec)) octal(b, 136, 12, 0);
  b.write(flag, 156, 'latin1');
  e.linkpath.subarray(0, 100).copy(b, 157);
  b.write('ustar\x0000', 257, 'latin1');
  if (!octal(b, 329, 8, e.devmajor)) pax.push(['SCHILY.devmajor', Buffer.from(String(e.devmajor))]), octal(b, 329, 8, 0);
  if (!octal(b, 337, 8, e.devminor)) pax.push(['SCHILY.devminor', Buffer.from(String(e.devminor))]), octal(b, 337, 8, 0);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += b[i] as number;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return b;
}

/**
 * Encodes the header blocks of one entry (a PAX header first when anything does not fit ustar).
 * The caller writes the entry data after them, padded with `tarPadding(size)`.
 */
export function encodeTarHeaders(e: TarEntry): Buffer {
  const pax: Array<[string, Buffer]> = [];
  if (e.path.length > 100) pax.push(['path', e.path]);
  return headersWith(e, e.path, e.type === 'file' ? e.size : 0, pax);
}

/**
 * The header blocks of `e` under `name` with `size` stored bytes, `pax` (and whatever else of `e`
 * does not fit ustar) in a PAX header first.
 */
function headersWith(e: TarEntry, name: Buffer, size: number, pax: Array<[string, Buffer]>): Buffer {
  if (e.linkpath.length > 100) pax.push(['linkpath', e.linkpath]);
  if (e.mtimeNsec !== 0 || e.mtimeSec < 0 || e.mtimeSec > 0o77777777777) pax.push(['mtime', Buffer.from(paxTimeText(e.mtimeSec, e.mtimeNsec))]);
  for (const [xname, value] of e.xattrs) pax.push([`SCHILY.xattr.${encodeGnuXattrKeyword(xname.toString('utf8'))}`, value]);
  const header = rawHeader(name, e, TYPEFLAG[e.type], size, pax);
  if (pax.length === 0) return header;
  const paxData = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)));
  const paxName = Buffer.from('PaxHeaders/' + e.path.subarray(Math.max(0, e.path.length - 80)).toString('latin1'), 'latin1');
  const paxHeader = rawHeader(paxName, { ...e, mode: 0o644, uid: 0, gid: 0, mtimeSec: 0, devmajor: 0, devminor: 0, linkpath: Buffer.alloc(0) }, 'x', paxData.length, []);
  return Buffer.concat([paxHeader, paxData, Buffer.alloc(tarPadding(paxData.length)), header]);
}

/** The bytes a sparse file's runs (offset, length pairs) place: what the archive stores of it. */
export function sparseDataBytes(runs: readonly number[]): number {
  let n = 0;
  for (let i = 1; i < runs.length; i += 2) n += runs[i] as number;
  return n;
}

/**
 * A sparse file's headers as GNU tar writes them with `--sparse` (PAX format 1.0, which GNU tar,
 * bsdtar and Go's archive/tar read back with its holes): the PAX records name the file and its
 * size, the header names a stand-in (`GNUSparseFile.0/NAME`, what a reader that knows no sparse
 * files extracts), and the map of `dataRuns` (offset, length pairs, in order, within `e.size`)
 * starts the data, padded to a block. The caller writes the runs' bytes after it, then
 * `tarPadding(their total)`. Every run but the last is whole blocks long: GNU tar starts each
 * run's bytes at a block of their own where Go's archive/tar (and this parser) read them as one
 * stream, and the two agree only then (as GNU tar, which finds holes block by block, writes).
 */
export function encodeSparseTarHeaders(e: TarEntry, dataRuns: readonly number[]): Buffer {
  for (let i = 1; i < dataRuns.length - 1; i += 2) {
    if ((dataRuns[i] as number) % TAR_BLOCK !== 0) throw new RangeError(`a sparse file's run of ${dataRuns[i]} bytes is not whole blocks`);
  }
  const stored = sparseDataBytes(dataRuns);
  // A file that ends in a hole ends its map with a run of no bytes at its end: GNU tar sizes the
  // file it extracts by the map's last run (its realsize record notwithstanding), as it writes.
  const n = dataRuns.length;
  const runs = n > 0 && (dataRuns[n - 2] as number) + (dataRuns[n - 1] as number) === e.size ? dataRuns : [...dataRuns, e.size, 0];
  const mapText = Buffer.from(`${runs.length / 2}\n${runs.map((n) => `${n}\n`).join('')}`, 'latin1');
  const map = Buffer.concat([mapText, Buffer.alloc(tarPadding(mapText.length))]);
  const slash = e.path.lastIndexOf(0x2f);
  const base = e.path.subarray(slash + 1);
  const stand = Buffer.concat([e.path.subarray(0, slash + 1), Buffer.from('GNUSparseFile.0/'), base]);
  const pax: Array<[string, Buffer]> = [
    ['GNU.sparse.major', Buffer.from('1')],
    ['GNU.sparse.minor', Buffer.from('0')],
    ['GNU.sparse.name', e.path],
    ['GNU.sparse.realsize', Buffer.from(String(e.size))],
  ];
  if (stand.length > 100) pax.push(['path', stand]);
  return Buffer.concat([headersWith({ ...e, type: 'file' }, stand, map.length + stored, pax), map]);
}

export function tarPadding(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

/** The end-of-archive marker: two zero blocks. */
export const TAR_END = Buffer.alloc(2 * TAR_BLOCK);
