/**
 * Scatter lists: arrays of byte views (guest descriptor buffers, reply buffers) treated as one
 * byte range.
 */

/** Total length of a scatter list. */
export function iovLength(iov: readonly Uint8Array[]): number {
  let n = 0;
  for (const v of iov) n += v.length;
  return n;
}

/**
 * Views covering bytes [start, start + length) of the scatter list (shorter if it ends first); a
 * view covered whole is the list's own.
 */
export function sliceViews(iov: readonly Uint8Array[], start: number, length: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = start;
  let left = length;
  for (const v of iov) {
    if (left === 0) break;
    if (skip >= v.length) {
      skip -= v.length;
      continue;
    }
    const n = Math.min(v.length - skip, left);
    // A view taken whole is reused (a guest's page-cache read: 32 of them after the reply header).
    out.push(skip === 0 && n === v.length ? v : v.subarray(skip, skip + n));
    skip = 0;
    left -= n;
  }
  return out;
}

/** Copies `src[from, from + length)` into the scatter list from its start. */
export function scatter(src: Uint8Array, from: number, length: number, iov: readonly Uint8Array[]): void {
  scatterAt(from === 0 && length === src.length ? src : src.subarray(from, from + length), iov, 0);
}

/**
 * Copies all of `src` into the scatter list from byte `at` of it (as much as fits); returns the
 * bytes copied. Creates no views of the destination (a reply header, then its payload).
 */
export function scatterAt(src: Uint8Array, iov: readonly Uint8Array[], at: number): number {
  let skip = at;
  let pos = 0;
  for (const d of iov) {
    if (pos === src.length) break;
    if (skip >= d.length) {
      skip -= d.length;
      continue;
    }
    const n = Math.min(d.length - skip, src.length - pos);
    d.set(pos === 0 && n === src.length ? src : src.subarray(pos, pos + n), skip);
    pos += n;
    skip = 0;
  }
  return pos;
}

/** Copies the first `length` bytes of a scatter list into one new Buffer. */
export function gather(iov: readonly Uint8Array[], length = iovLength(iov)): Buffer {
  const out = Buffer.allocUnsafe(length);
  let pos = 0;
  for (const v of iov) {
    if (pos >= length) break;
    const n = Math.min(v.length, length - pos);
    out.set(v.subarray(0, n), pos);
    pos += n;
  }
  return pos === length ? out : out.subarray(0, pos);
}
