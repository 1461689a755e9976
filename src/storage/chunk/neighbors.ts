/**
 * Which chunks are stored next to which, per blob, in compressed-offset order: what read
 * amplification (nydus `amplify_io`) fetches along with a missing chunk.
 */
import type { ChunkInfo } from '../../format/chunk-info.js';

export class ChunkNeighbors {
  private readonly byBlob = new Map<number, ChunkInfo[]>();

  constructor(chunks: Iterable<ChunkInfo>) {
    for (const c of chunks) {
      let list = this.byBlob.get(c.blobIndex);
      if (list === undefined) this.byBlob.set(c.blobIndex, (list = []));
      list.push(c);
    }
    for (const list of this.byBlob.values()) list.sort((a, b) => a.compressedOffset - b.compressedOffset);
  }

  /** The chunks stored right after `c` (no gap), while their compressed sizes fit in `maxBytes`. */
  after(c: ChunkInfo, maxBytes: number): ChunkInfo[] {
    const list = this.byBlob.get(c.blobIndex);
    if (list === undefined) return [];
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((list[mid] as ChunkInfo).compressedOffset <= c.compressedOffset) lo = mid + 1;
      else hi = mid;
    }
    const out: ChunkInfo[] = [];
    let end = c.compressedOffset + c.compressedSize;
    let budget = maxBytes;
    for (let i = lo; i < list.length; i++) {
      const n = list[i] as ChunkInfo;
      if (n.compressedOffset !== end || n.compressedSize > budget) break;
      out.push(n);
      budget -= n.compressedSize;
      end += n.compressedSize;
    }
    return out;
  }
}
