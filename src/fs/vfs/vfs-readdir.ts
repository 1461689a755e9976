/**
 * Directory listings of the Vfs: pseudo directories (".", "..", then their children; a child
 * that is a mount point shows the backend root's id and, with READDIRPLUS, its attributes) and
 * backend directories with ids mapped. A backend without READDIRPLUS is listed with READDIR and
 * a LOOKUP per entry, since the kernel asks every directory of the connection the same way.
 */
import { type DirEntry, type DirEntryPlus, type DirSink, type EntryReply, Errno, FsError, type RequestContext } from '../types.js';
import type { PseudoNode } from './pseudo.js';
import { ROOT_ID, type Slot } from './slots.js';
import { type BackendTarget, type Target, VfsCore } from './vfs-core.js';

const DT_DIR = 4;
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');
/** Entries fetched per READDIR when READDIRPLUS is emulated. */
const EMULATION_BATCH = 64;

interface PseudoItem {
  name: Buffer;
  node: PseudoNode;
  dot: boolean;
}

function isDot(name: Uint8Array): boolean {
  return Buffer.compare(name, DOT) === 0 || Buffer.compare(name, DOTDOT) === 0;
}

export class VfsReaddir extends VfsCore {
  private pseudoItems(node: PseudoNode, offset: number): PseudoItem[] {
    if (offset < 0) throw new FsError(Errno.EINVAL);
    const items: PseudoItem[] = [
      { name: DOT, node, dot: true },
      { name: DOTDOT, node: node.parent ?? node, dot: true },
      ...[...node.children.values()].map((c) => ({ name: c.name, node: c, dot: false })),
    ];
    return items.slice(offset);
  }

  /** `st_ino` of a backend's root (its mount point's `d_ino`). */
  private async rootIno(ctx: RequestContext, slot: Slot): Promise<number> {
    try {
      const r = await slot.fs.getattr?.(ctx, ROOT_ID);
      if (r !== undefined) return this.inoOut(slot, r.attr.ino);
    } catch {
      // an unreadable root still gets listed
    }
    return this.inoOut(slot, ROOT_ID);
  }

  protected async listDir(ctx: RequestContext, t: Target, fh: bigint, offset: number, add: DirSink<DirEntry>): Promise<void> {
    if (t.kind === 'pseudo') {
      let off = offset;
      for (const it of this.pseudoItems(t.node, offset)) {
        const ino = !it.dot && it.node.slot !== undefined ? await this.rootIno(ctx, it.node.slot) : it.node.id;
        if (!add({ ino, offset: ++off, type: DT_DIR, name: it.name })) break;
      }
      return;
    }
    const { slot, inner } = t;
    await this.call(slot, () => slot.fs.readdir?.(ctx, inner, fh, offset, (e) => add({ ...e, ino: this.inoOut(slot, e.ino) })));
  }

  protected async listDirPlus(ctx: RequestContext, t: Target, fh: bigint, offset: number, add: DirSink<DirEntryPlus>): Promise<void> {
    if (t.kind === 'pseudo') return this.pseudoPlus(ctx, t.node, offset, add);
    const { slot, inner } = t;
    const fs = slot.fs;
    if (fs.readdirplus === undefined) return this.emulatePlus(ctx, t, fh, offset, add);
    // References are counted once the listing is answered: a listing that fails midway (its
    // mount removed under it) delivers none of the entries it had added.
    let delivered = 0;
    try {
      await fs.readdirplus(ctx, inner, fh, offset, (e) => {
        const entry = e.entry.nodeid === 0 ? { ...e.entry, attr: { ...e.entry.attr, ino: this.inoOut(slot, e.entry.attr.ino) } } : this.mapEntry(slot, e.entry, false);
        const ok = add({ ...e, ino: this.inoOut(slot, e.ino), entry });
        if (ok && entry.nodeid !== 0) delivered++;
        return ok;
      });
    } catch (e) {
      if (!slot.mounted) throw this.goneError(slot, e);
      if (e instanceof FsError && e.errno === Errno.ENOSYS && fs.readdir !== undefined) return this.emulatePlus(ctx, t, fh, offset, add);
      throw e;
    }
    this.countRef(slot, delivered);
  }

  private async pseudoPlus(ctx: RequestContext, node: PseudoNode, offset: number, add: DirSink<DirEntryPlus>): Promise<void> {
    let off = offset;
    for (const it of this.pseudoItems(node, offset)) {
      off++;
      let entry: EntryReply;
      let slot: Slot | undefined;
      if (it.dot) {
        entry = { nodeid: 0, generation: 0, attr: this.tree.attr(it.node), entryTimeout: 0, attrTimeout: 0 };
      } else if (it.node.slot !== undefined) {
        slot = it.node.slot;
        try {
          entry = await this.crossEntry(ctx, slot, false);
        } catch (e) {
          this.log.debug({ mountpoint: slot.path, err: String(e) }, 'vfs: mount root unavailable for READDIRPLUS');
          continue;
        }
      } else {
        entry = { nodeid: it.node.id, generation: 0, attr: this.tree.attr(it.node), entryTimeout: this.timeout, attrTimeout: this.timeout };
      }
      if (!add({ ino: entry.nodeid !== 0 ? entry.attr.ino : it.node.id, offset: off, type: DT_DIR, name: it.name, entry })) break;
      if (slot !== undefined) this.countRef(slot);
      else if (!it.dot) this.tree.ref(it.node);
    }
  }

  /** READDIRPLUS from READDIR and LOOKUP, for a backend that only lists names. */
  private async emulatePlus(ctx: RequestContext, t: BackendTarget, fh: bigint, offset: number, add: DirSink<DirEntryPlus>): Promise<void> {
    const { slot, inner } = t;
    const fs = slot.fs;
    if (fs.readdir === undefined) throw new FsError(Errno.ENOSYS);
    const batch: DirEntry[] = [];
    await this.call(slot, () =>
      fs.readdir?.(ctx, inner, fh, offset, (e) => {
        if (batch.length >= EMULATION_BATCH) return false;
        batch.push(e);
        return true;
      }),
    );
    // Backend ids of the entries added; forgotten again if the listing fails midway.
    const delivered: number[] = [];
    try {
      for (const e of batch) {
        let entry: EntryReply;
        let looked = 0;
        if (isDot(e.name)) {
          const r = await this.call(slot, () => fs.getattr?.(ctx, inner));
          entry = { nodeid: 0, generation: 0, attr: { ...r.attr, ino: this.inoOut(slot, e.ino) }, entryTimeout: 0, attrTimeout: 0 };
        } else {
          const r = await this.call(slot, () => fs.lookup?.(ctx, inner, e.name));
          looked = r.nodeid;
          try {
            entry = this.mapEntry(slot, r, false);
          } catch (err) {
            if (looked !== 0 && slot.mounted) fs.forget?.(looked, 1);
            throw err;
          }
        }
        if (!add({ ...e, ino: this.inoOut(slot, e.ino), entry })) {
          if (looked !== 0) fs.forget?.(looked, 1);
          break;
        }
        if (entry.nodeid !== 0) delivered.push(looked);
      }
    } catch (err) {
      if (slot.mounted) for (const id of delivered) fs.forget?.(id, 1);
      throw err;
    }
    this.countRef(slot, delivered.length);
  }
}
