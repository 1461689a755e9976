/**
 * The nydusd-compatible daemon (Kata `shared_fs = "virtio-fs-nydus"`; nydus-snapshotter's fusedev
 * mode): a Vfs whose mounts are made through the control API (`/containers` passthrough of the
 * sandbox share, `/rafs/<cid>/lowerdir` images), served to the guest over vhost-user-fs or on the
 * host through /dev/fuse. States as nydusd's: INIT until the vhost-user socket listens or the FUSE
 * filesystem is mounted, then RUNNING; STOPPED once closed. Every mount has its own counters (also
 * summed in the daemon's `Metrics`) and records its access pattern.
 */
import { stat } from 'node:fs/promises';
import { LOG_LEVELS, type LogLevel, type Logger, type Metrics, errorMessage } from '../base/index.js';
import type { Codecs } from '../format/compression.js';
import type { FileSystem } from '../fs/types.js';
import { MountError, Vfs, normalizeMountPath } from '../fs/vfs/index.js';
import { FuseServer, InitFlag } from '../fuse/index.js';
import { type BuildInfo, DaemonError, type DaemonControl, type DaemonInfo, type DaemonState, type MetricsKind, type MountRequest } from './control.js';
import { FsStats, type InflightOp } from './fs-stats.js';
import { type MountRecord, type PassthroughFactory, backendMetrics, backendTypeOf, blobcacheMetrics, describe, superblockInfo } from './mounts.js';
import type { RafsFactory } from './rafs-mount.js';
import { ScopedMetrics } from './scoped-metrics.js';
import { FuseMount } from '../transport/index.js';
import { buildInfo } from './version.js';
import { type ListenTarget, VhostService, removeStaleSocket } from './vhost-service.js';

export interface NydusDaemonOptions {
  log: Logger;
  metrics: Metrics;
  codecs: Codecs;
  id?: string;
  supervisor?: string;
  /** Creates passthrough filesystems; without it passthrough mounts are Unsupported. */
  passthrough?: PassthroughFactory;
  /** Creates RAFS filesystems (default: the real image service). */
  rafs?: RafsFactory;
  /** Announce mount points to the guest as submounts (FUSE_ATTR_SUBMOUNT). */
  announceSubmounts?: boolean;
  version?: BuildInfo;
  /** Called for `PUT /api/v1/daemon/exit`. */
  onExit?: () => void;
}

const MAX_EVENTS = 64;

/** Releases what a filesystem holds (fds of a passthrough): `close()` if it has one, else `destroy()`. */
function closeFs(fs: FileSystem): void {
  const c = (fs as { close?: () => void }).close;
  if (typeof c === 'function') c.call(fs);
  else fs.destroy?.();
}

export class NydusDaemon implements DaemonControl {
  readonly vfs: Vfs;
  readonly server: FuseServer;
  private state: DaemonState = 'INIT';
  private readonly mounts = new Map<string, MountRecord>();
  private readonly busy = new Set<string>();
  private vhost: VhostService | undefined;
  private fuse: FuseMount | undefined;
  private socketPath: string | undefined;
  private readonly errors: Array<{ time: string; message: string }> = [];
  private totalErrors = 0;

  constructor(private readonly opts: NydusDaemonOptions) {
    this.vfs = new Vfs({
      log: opts.log.child({ component: 'vfs' }),
      // Images mounted after FUSE_INIT still get READDIRPLUS.
      initFlags: InitFlag.DO_READDIRPLUS | InitFlag.READDIRPLUS_AUTO,
      announceSubmounts: opts.announceSubmounts === true,
      owner: { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 },
    });
    this.server = new FuseServer(this.vfs, { log: opts.log.child({ component: 'fuse' }), metrics: opts.metrics });
  }

  get currentState(): DaemonState {
    return this.state;
  }

  /** Binds the vhost-user socket: the daemon is RUNNING from now on. */
  listen(target: ListenTarget): void {
    this.vhost = new VhostService({ server: this.server, log: this.opts.log, metrics: this.opts.metrics });
    this.vhost.listen(target);
    if ('socketPath' in target) this.socketPath = target.socketPath;
    this.state = 'RUNNING';
    this.opts.log.info({ target }, 'vhost-user socket listening; state RUNNING');
  }

  /** Mounts the filesystem on the host at `mountpoint` through /dev/fuse: RUNNING from now on. */
  mountFuse(opts: { mountpoint: string; readOnly: boolean }): void {
    this.fuse = FuseMount.mount({ mountpoint: opts.mountpoint, server: this.server, log: this.opts.log.child({ component: 'fusedev' }), readOnly: opts.readOnly, fsname: 'rafs', subtype: '', noatime: true });
    this.state = 'RUNNING';
    this.opts.log.info({ mountpoint: opts.mountpoint }, 'FUSE filesystem mounted; state RUNNING');
  }

  /** Serves the VMM until it disconnects, or the FUSE mount until it is unmounted; resolves with the reason. */
  async run(): Promise<string> {
    if (this.fuse !== undefined) {
      await this.fuse.ended;
      return 'unmounted';
    }
    if (this.vhost === undefined) throw new Error('NydusDaemon.run before listen or mountFuse');
    return this.vhost.run();
  }

  info(withBackends: boolean): DaemonInfo {
    return {
      version: this.opts.version ?? buildInfo(),
      id: this.opts.id ?? null,
      supervisor: this.opts.supervisor ?? null,
      state: this.state,
      backend_collection: withBackends ? Object.fromEntries([...this.mounts].map(([mp, m]) => [mp, describe(m)])) : null,
    };
  }

  configure(conf: { log_level: string }): void {
    const want = String(conf.log_level).toLowerCase();
    const level = (want === 'off' ? 'silent' : want) as LogLevel;
    if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new DaemonError('InvalidArguments', `unknown log level ${JSON.stringify(conf.log_level)}`);
    this.opts.log.level = level;
    this.opts.log.info({ level }, 'log level changed');
  }

  private mountpointOf(mountpoint: string): string {
    try {
      return normalizeMountPath(mountpoint);
    } catch (e) {
      throw new DaemonError('InvalidArguments', errorMessage(e));
    }
  }

  private event(message: string): void {
    this.totalErrors++;
    this.errors.push({ time: new Date().toISOString(), message });
    if (this.errors.length > MAX_EVENTS) this.errors.shift();
  }

  async mount(mountpoint: string, req: MountRequest): Promise<void> {
    const mp = this.mountpointOf(mountpoint);
    if (this.mounts.has(mp) || this.busy.has(mp)) throw new DaemonError('AlreadyExists', `${mp} is already mounted`);
    this.busy.add(mp);
    try {
      const record = await this.open(mp, req);
      try {
        this.vfs.mount(mp, record.fs);
      } catch (e) {
        await record.close().catch(() => undefined);
        throw e instanceof MountError ? new DaemonError(e.kind === 'AlreadyExists' ? 'AlreadyExists' : e.kind === 'InvalidPath' ? 'InvalidArguments' : 'Other', e.message) : e;
      }
      this.mounts.set(mp, record);
      this.opts.log.info({ mountpoint: mp, type: record.type, source: req.source }, 'mounted');
    } catch (e) {
      this.event(`mount ${mp}: ${errorMessage(e)}`);
      throw e;
    } finally {
      this.busy.delete(mp);
    }
  }

  /** Builds the filesystem of a mount request (not yet in the Vfs). */
  private async open(mp: string, req: MountRequest): Promise<MountRecord> {
    const type = backendTypeOf(req.fs_type);
    if (type === undefined) throw new DaemonError('InvalidArguments', `only 'rafs' and 'passthrough_fs' are supported, but ${JSON.stringify(req.fs_type)} was specified`);
    const metrics = new ScopedMetrics(this.opts.metrics);
    const stats = new FsStats(mp);
    const log = this.opts.log.child({ mountpoint: mp });
    if (type === 'Rafs') {
      // The image-serving code (storage, registry client, formats) is loaded by the first RAFS
      // mount, not at start: Kata waits for the daemon to listen before it asks for any.
      const rafs = this.opts.rafs ?? (await import('./rafs-mount.js')).openRafsMount;
      const files = req.prefetch_files ?? undefined;
      const m = await rafs({ mountpoint: mp, source: req.source, config: req.config, ...(files ? { prefetchFiles: files } : {}) }, { codecs: this.opts.codecs, log, metrics });
      return {
        mountpoint: mp,
        type,
        mountedAt: new Date(),
        config: m.config,
        stats,
        metrics,
        fs: stats.wrap(m.fs),
        ...(m.image ? { image: m.image } : {}),
        backendType: m.backendType,
        ...(m.cacheDir !== undefined ? { cacheDir: m.cacheDir } : {}),
        ...(m.cacheCipher !== undefined ? { cacheCipher: m.cacheCipher } : {}),
        close: () => m.close(),
      };
    }
    const factory = this.opts.passthrough;
    if (factory === undefined) throw new DaemonError('Unsupported', 'the passthrough filesystem is not available in this build');
    const st = await stat(req.source).catch(() => undefined);
    if (st === undefined || !st.isDirectory()) throw new DaemonError('InvalidArguments', `passthrough source ${req.source} is not a directory`);
    // xattrs on, as nydusd's passthrough backends: overlayfs on the share needs trusted.* xattrs.
    // No writeback cache (nydusd turns it on): the host changes the share (bind mounts, resolv.conf).
    const fs = await factory({ root: req.source, xattr: true, cache: 'auto', announceSubmounts: this.opts.announceSubmounts === true, log, metrics });
    return { mountpoint: mp, type, mountedAt: new Date(), config: null, stats, metrics, fs: stats.wrap(fs), close: async () => closeFs(fs) };
  }

  async remount(mountpoint: string, req: MountRequest): Promise<void> {
    const mp = this.mountpointOf(mountpoint);
    const old = this.mounts.get(mp);
    if (old === undefined) throw new DaemonError('NotFound', `${mp} is not mounted`);
    if (old.type !== 'Rafs' || backendTypeOf(req.fs_type) !== 'Rafs') throw new DaemonError('Unsupported', 'only a rafs mount can be remounted with a rafs image');
    if (this.busy.has(mp)) throw new DaemonError('AlreadyExists', `${mp} is being changed`);
    this.busy.add(mp);
    try {
      const record = await this.open(mp, req);
      this.vfs.umount(mp);
      this.vfs.mount(mp, record.fs);
      this.mounts.set(mp, record);
      await old.close().catch((e: unknown) => this.opts.log.warn({ mountpoint: mp, err: errorMessage(e) }, 'closing the replaced image failed'));
      this.opts.log.info({ mountpoint: mp, source: req.source }, 'remounted');
    } finally {
      this.busy.delete(mp);
    }
  }

  async umount(mountpoint: string): Promise<void> {
    const mp = this.mountpointOf(mountpoint);
    const m = this.mounts.get(mp);
    if (this.busy.has(mp)) throw new DaemonError('Other', `${mp} is being mounted`);
    if (m === undefined) throw new DaemonError('NotFound', `${mp} is not mounted`);
    this.vfs.umount(mp);
    this.mounts.delete(mp);
    this.opts.log.info({ mountpoint: mp }, 'unmounted');
    await m.close().catch((e: unknown) => this.opts.log.warn({ mountpoint: mp, err: errorMessage(e) }, 'closing the unmounted filesystem failed'));
  }

  /** The mount metrics are asked of: `id`, or the only RAFS mount. */
  private target(id: string | undefined): MountRecord {
    if (id !== undefined) {
      let mp: string;
      try {
        mp = normalizeMountPath(id);
      } catch {
        throw new DaemonError('NoCounter', `no metrics for ${id}`);
      }
      const m = this.mounts.get(mp);
      if (m === undefined) throw new DaemonError('NoCounter', `no metrics for ${id}`);
      return m;
    }
    const rafs = [...this.mounts.values()].filter((m) => m.type === 'Rafs');
    if (rafs.length !== 1) throw new DaemonError('NoCounter', `give the id of one of ${rafs.length} rafs mounts`);
    return rafs[0] as MountRecord;
  }

  metrics(kind: MetricsKind, id: string | undefined, opts: { latest?: boolean } = {}): unknown {
    const m = this.target(id);
    switch (kind) {
      case 'global':
        return m.stats.exportGlobal();
      case 'files':
        return m.stats.exportFiles(opts.latest === true);
      case 'pattern':
        return m.stats.exportPatterns();
      case 'backend':
        if (m.type !== 'Rafs') throw new DaemonError('NoCounter', `${m.mountpoint} has no storage backend`);
        return backendMetrics(m);
      case 'blobcache':
        if (m.type !== 'Rafs') throw new DaemonError('NoCounter', `${m.mountpoint} has no blob cache`);
        return blobcacheMetrics(m);
    }
  }

  /** The access pattern of a mount as a prefetch list (one image path per line). */
  prefetchList(id: string | undefined): string {
    return this.target(id).stats.prefetchList();
  }

  inflight(): InflightOp[] {
    return [...this.mounts.values()].flatMap((m) => m.stats.inflightOps(m.mountpoint));
  }

  backendInfo(mountpoint: string): unknown {
    const m = this.mounts.get(this.mountpointOf(mountpoint));
    if (m === undefined) throw new DaemonError('NotFound', `${mountpoint} is not mounted`);
    if (m.image === undefined) throw new DaemonError('Other', `${mountpoint} is not a rafs filesystem`);
    return superblockInfo(m);
  }

  events(): unknown {
    return { max_errors: MAX_EVENTS, total_errors: this.totalErrors, max_size: MAX_EVENTS, total_size: this.errors.length, errors: [...this.errors] };
  }

  exit(): void {
    if (this.opts.onExit === undefined) throw new DaemonError('Unsupported', 'this daemon cannot be stopped through the API');
    setImmediate(this.opts.onExit);
  }

  start(): void {
    throw new DaemonError('UnexpectedEvent', `Start (the daemon is ${this.state})`);
  }

  /** Stops serving, unmounts everything. */
  async close(): Promise<void> {
    this.state = 'STOPPED';
    this.vhost?.close();
    await this.fuse?.unmount();
    if (this.socketPath !== undefined) removeStaleSocket(this.socketPath);
    for (const mp of [...this.mounts.keys()]) await this.umount(mp).catch(() => undefined);
  }
}
