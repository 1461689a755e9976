/**
 * The persistent record of which chunks of a blob are in its cache file: one byte per chunk
 * after a 16-byte header, so that several processes marking different chunks never overwrite
 * each other's marks.
 *
 * | off | size | type   | field                                   |
 * |-----|------|--------|-----------------------------------------|
 * | 0   | 8    | u8[8]  | magic "DFLYCMAP"                        |
 * | 8   | 4    | u32    | version (1)                             |
 * | 12  | 4    | u32    | in use (0 = every user closed cleanly)  |
 * | 16  | n    | u8[n]  | state of chunk i: 0 absent, 1 present,  |
 * |     |      |        | 2 present but to be verified            |
 *
 * A chunk is marked present only after its bytes were written to the cache file. Users hold a
 * shared flock on the map while they have the blob open; the last one to close (it can take the
 * lock exclusively) syncs and clears "in use". If the flag is found set at open, a user died with
 * the map open (or another is using it now): marks may be ahead of data that never reached the disk
 * (power loss), so every present chunk is verified once before it is served. An opener that is
 * alone and finds the flag set writes that down (every 1 becomes 2) before it goes on: its own
 * clean close clears the flag, and the chunks it never read must still be verified by the next
 * user. A chunk that passes is marked 1 again. `cache gc` removes a blob only when it can take the
 * lock exclusively (no user). (Versions before the 2 read it as absent: safe.)
 */
import { type FileHandle, open, stat } from 'node:fs/promises';
import { readFully, writeFully } from '../../base/index.js';
import { LOCK_EX, LOCK_NB, LOCK_SH, flockWait, native } from '../../native/index.js';

const MAGIC = Buffer.from('DFLYCMAP');
const VERSION = 1;
export const CHUNK_MAP_HEADER = 16;

export const ChunkState = { ABSENT: 0, PRESENT: 1, UNVERIFIED: 2 } as const;

/** How long opening a map waits for another user's exclusive hold (a close, a `cache gc`: moments). */
export const SHARED_LOCK_WAIT_MS = 30_000;

/**
 * Takes a shared lock without blocking the event loop (`flockWait`): a blocking flock(2) would stop
 * every request of the process for as long as another user holds the map exclusively (its close, a
 * `cache gc`), and forever if that user is this process itself (a cache closing while a late
 * reader opens it again: the close can never finish). A holder stuck longer than `limitMs` is an
 * error naming the map, not a hang.
 */
function sharedLock(fd: number, path: string, limitMs: number): Promise<void> {
  return flockWait(fd, LOCK_SH, `${path}: held exclusively by another user of the cache`, limitMs);
}

export class ChunkMap {
  private constructor(
    private readonly fh: FileHandle,
    private states: Uint8Array,
  ) {}

  /** Opens (or creates) the map; `uncleanShutdown` tells whether marks need verification. */
  static async open(path: string, opts: { lockWaitMs?: number } = {}): Promise<{ map: ChunkMap; uncleanShutdown: boolean }> {
    const fh = await open(path, 'a+').then(async (h) => {
      await h.close();
      return open(path, 'r+');
    });
    // Whoever gets the lock exclusively is the only user: it may (re)initialise the file.
    const alone = native.flock(fh.fd, LOCK_EX | LOCK_NB);
    if (!alone) {
      try {
        await sharedLock(fh.fd, path, opts.lockWaitMs ?? SHARED_LOCK_WAIT_MS);
      } catch (e) {
        await fh.close();
        throw e;
      }
    }
    try {
      return await ChunkMap.load(fh, alone);
    } catch (e) {
      await fh.close(); // and with it the lock
      throw e;
    }
  }

  /** Reads (or initialises) the opened, locked map; `open` closes `fh` if this fails. */
  private static async load(fh: FileHandle, alone: boolean): Promise<{ map: ChunkMap; uncleanShutdown: boolean }> {
    const { size } = await fh.stat();
    const all = Buffer.alloc(size);
    if (size > 0) await readFully(fh, all, 0, size, 0); // short only if cut meanwhile: zeros, absent
    let states: Uint8Array;
    let unclean = false;
    if (alone && (size < CHUNK_MAP_HEADER || !all.subarray(0, 8).equals(MAGIC) || all.readUInt32LE(8) !== VERSION)) {
      // New or unrecognized: start empty (a foreign or corrupt map must never mark chunks present).
      const header = Buffer.alloc(CHUNK_MAP_HEADER);
      MAGIC.copy(header, 0);
      header.writeUInt32LE(VERSION, 8);
      await fh.truncate(0);
      await writeFully(fh, header, 0);
      states = new Uint8Array(0);
    } else if (size < CHUNK_MAP_HEADER || !all.subarray(0, 8).equals(MAGIC)) {
      // Another user is creating it right now: start empty, mark as we go.
      states = new Uint8Array(0);
      unclean = true;
    } else {
      unclean = all.readUInt32LE(12) !== 0;
      states = Uint8Array.from(all.subarray(CHUNK_MAP_HEADER), (s) =>
        s === ChunkState.PRESENT ? (unclean ? ChunkState.UNVERIFIED : ChunkState.PRESENT) : s === ChunkState.UNVERIFIED ? ChunkState.UNVERIFIED : ChunkState.ABSENT,
      );
    }
    const map = new ChunkMap(fh, states);
    // The first user after an unclean end keeps its doubt on disk (see above).
    if (alone && unclean) await map.persistStates();
    await map.setInUse(1);
    if (alone) native.flock(fh.fd, LOCK_SH); // downgrade: others may now share the blob
    return { map, uncleanShutdown: unclean };
  }

  /** Whether this map is still the file at `path` (not removed, or replaced, since it was opened). */
  async isAt(path: string): Promise<boolean> {
    const [mine, there] = await Promise.all([this.fh.stat(), stat(path).catch(() => undefined)]);
    return there !== undefined && there.ino === mine.ino && there.dev === mine.dev;
  }

  private async setInUse(n: number): Promise<void> {
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

  /** Writes every mark as it stands here, and syncs them (only while this user is alone). */
  private async persistStates(): Promise<void> {
    await writeFully(this.fh, this.states, CHUNK_MAP_HEADER);
    await this.fh.datasync();
  }

  /** Records a chunk whose bytes are in the cache file, or that passed verification (and persists the mark). */
  async markPresent(index: number): Promise<void> {
    this.ensure(index);
    const was = this.states[index];
    this.states[index] = ChunkState.PRESENT;
    if (was === ChunkState.PRESENT) return;
    await this.fh.write(Buffer.from([ChunkState.PRESENT]), 0, 1, CHUNK_MAP_HEADER + index);
  }

  /**
   * Every present chunk is to be verified before it is served again, here and by later users: the
   * data file turned out shorter than its marks say (cut by someone), so what lies below its end
   * may be holes a later store leaves as zeros.
   */
  async markAllUnverified(): Promise<void> {
    // Only the bytes that change, a run at a time: other users' marks of other chunks stay.
    let changed = false;
    for (let i = 0; i < this.states.length; ) {
      if (this.states[i] !== ChunkState.PRESENT) {
        i++;
        continue;
      }
      const start = i;
      while (this.states[i] === ChunkState.PRESENT) this.states[i++] = ChunkState.UNVERIFIED;
      await writeFully(this.fh, Buffer.alloc(i - start, ChunkState.UNVERIFIED), CHUNK_MAP_HEADER + start);
      changed = true;
    }
    if (changed) await this.fh.datasync();
  }

  /** Forgets a chunk whose cached bytes failed verification. */
  async markAbsent(index: number): Promise<void> {
    if (index >= this.states.length || this.states[index] === ChunkState.ABSENT) return;
    this.states[index] = ChunkState.ABSENT;
    await this.fh.write(Buffer.from([ChunkState.ABSENT]), 0, 1, CHUNK_MAP_HEADER + index);
  }

  /** Flushes the marks (after the data file was flushed) and records a clean close. */
  async close(dataSynced: boolean): Promise<void> {
    try {
      // The last user (the only one able to lock exclusively) records the clean close.
      if (dataSynced && native.flock(this.fh.fd, LOCK_EX | LOCK_NB)) {
        await this.fh.datasync();
        await this.setInUse(0);
        await this.fh.datasync();
      }
    } finally {
      await this.fh.close(); // and with it the lock
    }
  }
}
