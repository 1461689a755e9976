/**
 * Node ids of the mount table and the backends behind them. A backend mounted in the Vfs gets a
 * slot index; its node ids reach the kernel as `index * 2^40 + inner` (inner < 2^40, so every id
 * stays below 2^53, exact in a JS number). Index 0 is the pseudo filesystem. A slot outlives its
 * mount while the kernel still holds node ids in it (counted from entry replies, released by
 * FORGET): its ids then answer ESTALE, and the index is reused only once they are all forgotten.
 */
import type { FileSystem } from '../types.js';

export const INNER_BITS = 40;
export const INNER_SPAN = 2 ** INNER_BITS;
/** Slot indexes 1 … MAX_SLOT (index 0 is the pseudo filesystem). */
export const MAX_SLOT = 2 ** (53 - INNER_BITS) - 1;
export const ROOT_ID = 1;

export interface Slot {
  readonly index: number;
  readonly fs: FileSystem;
  /** Normalized mount path ("/" or "/a/b"). */
  readonly path: string;
  mounted: boolean;
  /** Whether `fs.init` was called for the current session. */
  initialized: boolean;
  /** Lookups the kernel holds on node ids of this slot. */
  refs: number;
}

export function nodeIdOf(index: number, inner: number): number {
  return index * INNER_SPAN + inner;
}

export function splitNodeId(id: number): { index: number; inner: number } {
  return { index: Math.floor(id / INNER_SPAN), inner: id % INNER_SPAN };
}

/** A slot as a daemon taking over the connection needs it (nydusd's failover and live upgrade). */
export interface SlotState {
  index: number;
  path: string;
  mounted: boolean;
  refs: number;
}

export interface SlotTableState {
  fresh: number;
  cursor: number;
  slots: SlotState[];
}

export class SlotTable {
  private readonly slots = new Map<number, Slot>();
  /** Next never-used index; once every index was used, free ones are reused. */
  private fresh = 1;
  private cursor = 1;

  allocate(fs: FileSystem, path: string): Slot | undefined {
    const index = this.freeIndex();
    if (index === undefined) return undefined;
    const slot: Slot = { index, fs, path, mounted: true, initialized: false, refs: 0 };
    this.slots.set(index, slot);
    return slot;
  }

  private freeIndex(): number | undefined {
    if (this.fresh <= MAX_SLOT) return this.fresh++;
    for (let n = 0; n < MAX_SLOT; n++) {
      const i = ((this.cursor - 1 + n) % MAX_SLOT) + 1;
      if (!this.slots.has(i)) {
        this.cursor = (i % MAX_SLOT) + 1;
        return i;
      }
    }
    return undefined;
  }

  get(index: number): Slot | undefined {
    return this.slots.get(index);
  }

  mounted(): Slot[] {
    return [...this.slots.values()].filter((s) => s.mounted);
  }

  /** The slot stops being mounted; its index is freed once the kernel forgot its node ids. */
  detach(slot: Slot): void {
    slot.mounted = false;
    this.releaseIfIdle(slot);
  }

  addRef(slot: Slot, n = 1): void {
    slot.refs += n;
  }

  dropRefs(slot: Slot, n: number): void {
    slot.refs = Math.max(0, slot.refs - n);
    this.releaseIfIdle(slot);
  }

  private releaseIfIdle(slot: Slot): void {
    if (!slot.mounted && slot.refs === 0) this.slots.delete(slot.index);
  }

  /** The session ended: the kernel holds no node ids any more. */
  resetSession(): void {
    for (const s of [...this.slots.values()]) {
      s.refs = 0;
      s.initialized = false;
      this.releaseIfIdle(s);
    }
  }

  save(): SlotTableState {
    return { fresh: this.fresh, cursor: this.cursor, slots: [...this.slots.values()].map((s) => ({ index: s.index, path: s.path, mounted: s.mounted, refs: s.refs })) };
  }

  /** Puts saved slots back at their indexes (into an empty table), each with the filesystem `fsOf` gives. */
  restore(state: SlotTableState, fsOf: (s: SlotState) => FileSystem): Slot[] {
    if (this.slots.size > 0) throw new Error('SlotTable.restore into a table in use');
    if (typeof state !== 'object' || state === null || !Array.isArray(state.slots)) throw new Error('no mount slots in the state');
    const index = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 1 && (n as number) <= MAX_SLOT;
    if (!index(state.cursor) || !Number.isSafeInteger(state.fresh) || state.fresh < 1 || state.fresh > MAX_SLOT + 1) throw new Error('bad slot table counters');
    const out: Slot[] = [];
    for (const s of state.slots as unknown[] as SlotState[]) {
      if (typeof s !== 'object' || s === null || !index(s.index) || s.index >= state.fresh || this.slots.has(s.index) || !Number.isSafeInteger(s.refs) || s.refs < 0 || typeof s.path !== 'string' || typeof s.mounted !== 'boolean') {
        throw new Error(`bad mount slot ${JSON.stringify(s)}`);
      }
      const slot: Slot = { index: s.index, fs: fsOf(s), path: s.path, mounted: s.mounted, initialized: false, refs: s.refs };
      this.slots.set(s.index, slot);
      out.push(slot);
    }
    this.fresh = state.fresh;
    this.cursor = state.cursor;
    return out;
  }

  /** Slots unmounted but still referenced by the kernel. */
  get lingering(): number {
    return [...this.slots.values()].filter((s) => !s.mounted).length;
  }
}
