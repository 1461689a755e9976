/**
 * Per-mount filesystem statistics, as nydusd keeps them for each RAFS instance (`FsIoStats`):
 * operation counts and errors, cumulative latencies, read sizes, and the access pattern — the
 * order in which files were first opened or read, with timestamps and read counts — from which
 * a prefetch list for `damselfly build --prefetch-files` is made. Collected by wrapping the
 * mount's FileSystem; paths are learnt from the names the kernel looked up.
 */
import type { DirEntryPlus, DirSink, EntryReply, FileSystem } from '../fs/types.js';
import { Opcode } from '../fuse/abi.js';

/** nydusd's `StatsFop` order: the index of each operation in the counter arrays. */
export const STATS_FOPS = ['getattr', 'readlink', 'open', 'release', 'read', 'statfs', 'getxattr', 'listxattr', 'opendir', 'lookup', 'readdir', 'readdirplus', 'access', 'forget', 'batch_forget'] as const;
const FOP_INDEX = new Map<string, number>(STATS_FOPS.map((n, i) => [n, i]));
/** Operations that return a new entry whose name is worth remembering. */
const ENTRY_OPS = new Set(['lookup', 'mknod', 'mkdir', 'symlink', 'link', 'create']);
const SYNC_OPS = new Set(['init', 'destroy', 'forget', 'saveState', 'restoreState']);
/** Node ids whose names are remembered at most (a bound on memory, ~100 bytes each). */
const MAX_NAMES = 1 << 20;

export interface AccessPatternItem {
  ino: number;
  /** Path inside the mount, when the name chain up to the root was seen. */
  path: string | null;
  nr_read: number;
  first_access_time_secs: number;
  first_access_time_nanos: number;
}

export interface InflightOp {
  inode: number;
  opcode: number;
  unique: number;
  timestamp_secs: number;
  mountpoint: string;
}

interface Pattern {
  ino: number;
  nrRead: number;
  firstNs: bigint;
}

interface FileCounters {
  nr_open: number;
  nr_read: number;
  read_bytes: number;
  fop_errors: number;
}

function sizeBucket(n: number): number {
  const limits = [1 << 10, 4 << 10, 16 << 10, 64 << 10, 128 << 10, 512 << 10, 1 << 20];
  const i = limits.findIndex((l) => n < l);
  return i === -1 ? 7 : i;
}

function latencyBucket(us: number): number {
  const limits = [200, 1_000, 20_000, 50_000, 500_000, 1_000_000, 2_000_000];
  const i = limits.findIndex((l) => us <= l);
  return i === -1 ? 7 : i;
}

/** Wall-clock nanoseconds, monotonic within the process (first accesses sort correctly). */
const EPOCH_NS = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
function nowNs(): bigint {
  return EPOCH_NS + process.hrtime.bigint();
}

export class FsStats {
  private readonly hits: number[] = STATS_FOPS.map(() => 0);
  private readonly errors: number[] = STATS_FOPS.map(() => 0);
  private readonly latencyUs: number[] = STATS_FOPS.map(() => 0);
  private readonly blockCountRead: number[] = new Array<number>(8).fill(0);
  private readonly readLatencyDist: number[] = new Array<number>(8).fill(0);
  private dataRead = 0;
  private nrOpens = 0;
  private readonly names = new Map<number, { parent: number; name: string }>();
  private readonly patterns = new Map<number, Pattern>();
  private readonly files = new Map<number, FileCounters>();
  private latest = new Set<number>();
  private readonly inflight = new Map<number, { inode: number; op: string; at: number }>();
  private seq = 0;

  constructor(readonly id: string) {}

  /** The same filesystem, every operation counted. */
  wrap(fs: FileSystem): FileSystem {
    return new Proxy(fs, {
      get: (target, prop) => {
        const v = Reflect.get(target, prop, target) as unknown;
        if (typeof v !== 'function') return v;
        const fn = v as (...a: unknown[]) => unknown;
        if (typeof prop !== 'string' || SYNC_OPS.has(prop)) {
          if (prop === 'forget') return (nodeid: number, n: number) => (this.count('forget', 0, true), fn.call(target, nodeid, n));
          return fn.bind(target);
        }
        return (...args: unknown[]) => this.run(prop, target, fn as (...a: unknown[]) => Promise<unknown>, args);
      },
    });
  }

  private count(op: string, us: number, ok: boolean): void {
    const i = FOP_INDEX.get(op);
    if (i === undefined) return;
    if (ok) this.hits[i] = (this.hits[i] as number) + 1;
    else this.errors[i] = (this.errors[i] as number) + 1;
    this.latencyUs[i] = (this.latencyUs[i] as number) + us;
  }

  private async run(op: string, target: FileSystem, fn: (...a: unknown[]) => Promise<unknown>, args: unknown[]): Promise<unknown> {
    const nodeid = typeof args[1] === 'number' ? args[1] : 0;
    const seq = ++this.seq;
    this.inflight.set(seq, { inode: nodeid, op, at: Date.now() });
    if (op === 'readdirplus' && typeof args[4] === 'function') {
      const add = args[4] as DirSink<DirEntryPlus>;
      args[4] = (e: DirEntryPlus) => {
        const ok = add(e);
        if (ok && e.entry.nodeid !== 0) this.remember(e.entry.nodeid, nodeid, e.name);
        return ok;
      };
    }
    const t0 = process.hrtime.bigint();
    try {
      const r = await fn.apply(target, args);
      const us = Number((process.hrtime.bigint() - t0) / 1000n);
      this.count(op, us, true);
      this.after(op, nodeid, args, r, us);
      return r;
    } catch (e) {
      this.count(op, Number((process.hrtime.bigint() - t0) / 1000n), false);
      if (op === 'read' || op === 'open') this.file(nodeid).fop_errors++;
      throw e;
    } finally {
      this.inflight.delete(seq);
    }
  }

  private after(op: string, nodeid: number, args: unknown[], r: unknown, us: number): void {
    if (ENTRY_OPS.has(op)) {
      const entry = (op === 'create' ? (r as { entry: EntryReply }).entry : r) as EntryReply;
      // LINK(nodeid, newParent, newName): the new name is in the new parent.
      const [parent, name] = op === 'link' ? [args[2] as number, args[3] as Uint8Array] : [nodeid, args[2] as Uint8Array];
      if (entry.nodeid !== 0) this.remember(entry.nodeid, parent, name);
      if (op === 'create') this.touch(entry.nodeid, false);
    } else if (op === 'read') {
      const n = r as number;
      this.dataRead += n;
      const b = sizeBucket(args[4] as number);
      const l = latencyBucket(us);
      this.blockCountRead[b] = (this.blockCountRead[b] as number) + 1;
      this.readLatencyDist[l] = (this.readLatencyDist[l] as number) + 1;
      this.touch(nodeid, true);
      const f = this.file(nodeid);
      f.nr_read++;
      f.read_bytes += n;
      this.latest.add(nodeid);
    } else if (op === 'open') {
      this.nrOpens++;
      this.touch(nodeid, false);
      this.file(nodeid).nr_open++;
    } else if (op === 'release') {
      this.nrOpens = Math.max(0, this.nrOpens - 1);
    }
  }

  private remember(nodeid: number, parent: number, name: Uint8Array): void {
    if (nodeid === parent || this.names.has(nodeid) || this.names.size >= MAX_NAMES) return;
    this.names.set(nodeid, { parent, name: Buffer.from(name).toString() });
  }

  private touch(nodeid: number, read: boolean): void {
    let p = this.patterns.get(nodeid);
    if (p === undefined) {
      if (this.patterns.size >= MAX_NAMES) return;
      p = { ino: nodeid, nrRead: 0, firstNs: nowNs() };
      this.patterns.set(nodeid, p);
    }
    if (read) p.nrRead++;
  }

  private file(nodeid: number): FileCounters {
    let f = this.files.get(nodeid);
    if (f === undefined) {
      f = { nr_open: 0, nr_read: 0, read_bytes: 0, fop_errors: 0 };
      if (this.files.size < MAX_NAMES) this.files.set(nodeid, f);
    }
    return f;
  }

  /** The path of a node id inside the mount, if every name up to the root was seen. */
  path(nodeid: number): string | null {
    const parts: string[] = [];
    let n = nodeid;
    for (let depth = 0; n !== 1; depth++) {
      const e = this.names.get(n);
      if (e === undefined || depth > 4096) return null;
      parts.unshift(e.name);
      n = e.parent;
    }
    return '/' + parts.join('/');
  }

  /** nydusd's global metrics of one filesystem (`GET /api/v1/metrics`). */
  exportGlobal(): Record<string, unknown> {
    return {
      id: this.id,
      files_account_enabled: true,
      access_pattern_enabled: true,
      record_latest_read_files_enabled: true,
      measure_latency: true,
      nr_opens: this.nrOpens,
      data_read: this.dataRead,
      block_count_read: [...this.blockCountRead],
      fop_hits: [...this.hits],
      fop_errors: [...this.errors],
      fop_cumulative_latency_total: [...this.latencyUs],
      read_latency_dist: [...this.readLatencyDist],
      nr_inflight: this.inflight.size,
    };
  }

  /** Per-file counters keyed by node id, or (`latest`) the files read since the last call. */
  exportFiles(latest: boolean): unknown {
    if (latest) {
      const ids = [...this.latest];
      this.latest = new Set();
      return ids;
    }
    return Object.fromEntries([...this.files].map(([ino, f]) => [String(ino), { ...f, path: this.path(ino) }]));
  }

  /** Files in the order of their first open or read (`GET /api/v1/metrics/pattern`). */
  exportPatterns(): AccessPatternItem[] {
    return [...this.patterns.values()]
      .sort((a, b) => (a.firstNs < b.firstNs ? -1 : a.firstNs > b.firstNs ? 1 : 0))
      .map((p) => ({
        ino: p.ino,
        path: this.path(p.ino),
        nr_read: p.nrRead,
        first_access_time_secs: Number(p.firstNs / 1_000_000_000n),
        first_access_time_nanos: Number(p.firstNs % 1_000_000_000n),
      }));
  }

  /** The access pattern as a prefetch list: one path per line, first accessed first. */
  prefetchList(): string {
    const paths = this.exportPatterns()
      .map((p) => p.path)
      .filter((p): p is string => p !== null && !p.includes('\n'));
    return paths.map((p) => `${p}\n`).join('');
  }

  inflightOps(mountpoint: string): InflightOp[] {
    return [...this.inflight.values()].map((o) => ({
      inode: o.inode,
      opcode: (Opcode as unknown as Record<string, number>)[o.op.toUpperCase()] ?? 0,
      unique: 0,
      timestamp_secs: Math.floor(o.at / 1000),
      mountpoint,
    }));
  }
}
