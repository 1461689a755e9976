/**
 * The persistent record of which chunks of a blob are in its cache file: one byte per chunk
 * after a 16-byte header, so that several processes marking different chunks never overwrite
 * each other's marks.
 *
 * | off | size | type   | field                                   |
 * |-----|------|--------|-----------------------------------------|
 * | 0   | 8    | u8[8]  | magic "DFLYCMAP"                        |
 * | 8   | 4    | u32    | version (1)                             |
 * | 12  | 4    | u32    | open count (0 = closed cleanly)         |
 * | 16  | n    | u8[n]  | state of chunk i: 0 absent, 1 present   |
 *
 * A chunk is marked present only after its bytes were written to the cache file. If a process died
 * with the map open (open count > 0 at the next open), marks may be ahead of data that never reached
 * the disk (power loss), so every present chunk is verified once before it is served.
 */
import { type FileHandle, open } from 'node:fs/promises';

const MAGIC = Buffer.from('DFLYCMAP');
const VERSION = 1;
export const CHUNK_MAP_HEADER = 16;

export const ChunkState = { ABSENT: 0, PRESENT: 1, UNVERIFIED: 2 } as const;

export class ChunkMap {
  private constructor(
    private readonly fh: FileHandle,
    private states: Uint8Array,
  ) {}

  /** Opens (or creates) the map; `uncleanShutdown` tells whether marks need verification. */
  static async open(path: string): Promise<{ map: ChunkMap; uncleanShutdown: boolean }> {
    const fh = await open(path, 'a+').then(async (h) => {
      await h.close();
      return open(path, 'r+');
    });
    const { size } = await fh.stat();
    const all = Buffer.alloc(size);
    if (size > 0) await fh.read(all, 0, size, 0);
    let states: Uint8Array;
    let unclean = false;
    if (size < CHUNK_MAP_HEADER || !all.subarray(0, 8).equals(MAGIC) || all.readUInt32LE(8) !== VERSION) {
      // New or unrecognized: start empty (a foreign or corrupt map must never mark chunks present).
      const header = Buffer.alloc(CHUNK_MAP_HEADER);
      MAGIC.copy(header, 0);
      header.writeUInt32LE(VERSION, 8);
      await fh.truncate(0);
      await fh.write(header, 0, header.length, 0);
      states = new Uint8Array(0);
    } else {
      unclean = all.readUInt32LE(12) !== 0;
      states = Uint8Array.from(all.subarray(CHUNK_MAP_HEADER), (s) => (s === ChunkState.PRESENT ? (unclean ? ChunkState.UNVERIFIED : ChunkState.PRESENT) : ChunkState.ABSENT));
    }
    const map = new ChunkMap(fh, states);
    await map.setOpenCount(1);
    return { map, uncleanShutdown: unclean };
  }

  private async setOpenCount(n: number): Promise<void> {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n, 0);
    await this.fh.write(b, 0, 4, 12);
  }

  state(index: number): number {
    return this.states[index] ?? ChunkState.ABSENT;
  }

  /** Present chunks (verified or not). */
  presentCount(): number {
    let n = 0;
    for (const s of this.states) if (s !== ChunkState.ABSENT) n++;
    return n;
  }

  private ensure(index: number): void {
    if (index < this.states.length) return;
    const next = new Uint8Array(Math.max(index + 1, this.states.length * 2));
    next.set(this.states);
    this.states = next;
  }

  /** Records a chunk whose bytes are in the cache file (and persists the mark). */
  async markPresent(index: number): Promise<void> {
    this.ensure(index);
    const was = this.states[index];
    this.states[index] = ChunkState.PRESENT;
    if (was !== ChunkState.ABSENT) return; // already persisted (UNVERIFIED just got verified)
    await this.fh.write(Buffer.from([ChunkState.PRESENT]), 0, 1, CHUNK_MAP_HEADER + index);
  }

  /** Forgets a chunk whose cached bytes failed verification. */
  async markAbsent(index: number): Promise<void> {
    if (index >= this.states.length || this.states[index] === ChunkState.ABSENT) return;
    this.states[index] = ChunkState.ABSENT;
    await this.fh.write(Buffer.from([ChunkState.ABSENT]), 0, 1, CHUNK_MAP_HEADER + index);
  }

  /** Flushes the marks (after the data file was flushed) and records a clean close. */
  async close(dataSynced: boolean): Promise<void> {
    if (dataSynced) {
      await this.fh.datasync();
      await this.setOpenCount(0);
      await this.fh.datasync();
    }
    await this.fh.close();
  }
}
