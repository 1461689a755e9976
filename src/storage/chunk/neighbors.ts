/**
 * Which chunks are stored next to which, per blob, in compressed-offset order: what read
 * amplification (nydus `amplify_io`) fetches along with a missing chunk.
 */
import { type ChunkInfo, extendsRun, sameStoredUnit, sharedUnit } from '../../format/chunk-info.js';

export class ChunkNeighbors {
  private readonly byBlob = new Map<number, ChunkInfo[]>();

  constructor(chunks: Iterable<ChunkInfo>) {
    for (const c of chunks) {
      let list = this.byBlob.get(c.blobIndex);
      if (list === undefined) this.byBlob.set(c.blobIndex, (list = []));
      list.push(c);
    }
    // Builders list chunks in storage order: sort only a list that is not (a comparator sort of
    // thousands of chunks cost a cold process tens of milliseconds in the first read's turn).
    for (const list of this.byBlob.values()) if (!inStorageOrder(list)) list.sort((a, b) => a.compressedOffset - b.compressedOffset);
  }

  /** Position of the first chunk of `list` stored after offset `offset` (`orAt`: at or after it). */
  private static search(list: ChunkInfo[], offset: number, orAt: boolean): number {
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const o = (list[mid] as ChunkInfo).compressedOffset;
      if (o < offset || (!orAt && o === offset)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The other members of `c`'s batch or ZRan context (none for a chunk stored alone). */
  members(c: ChunkInfo): ChunkInfo[] {
    const list = this.byBlob.get(c.blobIndex);
    if (list === undefined || sharedUnit(c) === undefined) return [];
    const out: ChunkInfo[] = [];
    for (let i = ChunkNeighbors.search(list, c.compressedOffset, true); i < list.length && (list[i] as ChunkInfo).compressedOffset === c.compressedOffset; i++) {
      const m = list[i] as ChunkInfo;
      if (m.index !== c.index && sameStoredUnit(c, m)) out.push(m);
    }
    return out;
  }

  /**
   * The chunks stored right after `c` (no gap), while their compressed sizes fit in `maxBytes` (a
   * batch counted once, with all its members).
   */
  after(c: ChunkInfo, maxBytes: number): ChunkInfo[] {
    const list = this.byBlob.get(c.blobIndex);
    if (list === undefined) return [];
    const lo = ChunkNeighbors.search(list, c.compressedOffset, false);
    const out: ChunkInfo[] = [];
    let end = c.compressedOffset + c.compressedSize;
    let budget = maxBytes;
    for (let i = lo; i < list.length; i++) {
      const n = list[i] as ChunkInfo;
      // Stored right after; or another member of a batch just taken, or a ZRan context that
      // overlaps the ones taken: only what passes the end counts.
      const grows = extendsRun(c.compressedOffset, end, n);
      if (grows === undefined || grows > budget) break;
      out.push(n);
      budget -= grows;
      end += grows;
    }
    return out;
  }
}

function inStorageOrder(list: ChunkInfo[]): boolean {
  for (let i = 1; i < list.length; i++) if ((list[i] as ChunkInfo).compressedOffset < (list[i - 1] as ChunkInfo).compressedOffset) return false;
  return true;
}
