/**
 * The nydusd-compatible daemon (Kata `shared_fs = "virtio-fs-nydus"`; nydus-snapshotter's fusedev
 * mode): a Vfs whose mounts are made through the control API (`/containers` passthrough of the
 * sandbox share, `/rafs/<cid>/lowerdir` images), served to the guest over vhost-user-fs or on the
 * host through /dev/fuse. States as nydusd's: INIT until the vhost-user socket listens or the FUSE
 * filesystem is mounted, then RUNNING; STOPPED once closed. A FUSE daemon hands its connection and
 * state to nydus-snapshotter's supervisor (sendfd); one started with `--upgrade` stays INIT until
 * it takes them over (READY) and is started (RUNNING): nydusd's failover and live upgrade. Every
 * mount has its own counters (also summed in the daemon's `Metrics`) and records its access
 * pattern.
 */
import { stat } from 'node:fs/promises';
import { LOG_LEVELS, type LogLevel, type Logger, type Metrics, collectAtRest, errorMessage, fileSha256 } from '../base/index.js';
import type { Codecs } from '../format/compression.js';
import type { FileSystem } from '../fs/types.js';
import { MountError, Vfs, type VfsState, normalizeMountPath } from '../fs/vfs/index.js';
import { FuseServer, InitFlag, type SessionState } from '../fuse/index.js';
import { type BuildInfo, DaemonError, type DaemonControl, type DaemonInfo, type DaemonState, type MetricsKind, type MountRequest } from './control.js';
import { FsStats, type InflightOp } from './fs-stats.js';
import { type MountRecord, type PassthroughFactory, backendMetrics, backendTypeOf, blobcacheMetrics, describe, superblockInfo } from './mounts.js';
import type { RafsFactory } from './rafs-mount.js';
import { ScopedMetrics } from './scoped-metrics.js';
import { native } from '../native/index.js';
import { FuseMount, type FuseMountOptions } from '../transport/index.js';
import { buildInfo } from './version.js';
import { restoreFromSupervisor, saveToSupervisor } from './supervisor.js';
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
  /**
   * Called for `PUT /api/v1/daemon/exit`; `keepMount`: the FUSE connection was handed to the
   * supervisor, so the mount must stay for the daemon that takes it over.
   */
  onExit?: (keepMount: boolean) => void;
  /** nydusd's `--failover-policy`: what a daemon that took over a connection does first. */
  failoverPolicy?: FailoverPolicy;
}

export type FailoverPolicy = 'none' | 'resend' | 'flush';

/** Where and how the FUSE filesystem is mounted on the host. */
export interface FuseMountSpec {
  mountpoint: string;
  readOnly: boolean;
}

/** A mount as a daemon taking over opens it again. */
interface HandoverMount {
  mountpoint: string;
  request: MountRequest;
  /** The bootstrap's SHA-256 when it was mounted: a changed file would give the node ids other inodes. */
  bootstrapSha256: string | null;
}

/** The state a FUSE daemon hands to its supervisor (`PUT /api/v1/daemon/fuse/sendfd`). */
interface HandoverState {
  format: typeof HANDOVER_FORMAT;
  mountpoint: string;
  session: SessionState | null;
  mounts: HandoverMount[];
  vfs: VfsState;
}

const HANDOVER_FORMAT = 'damselfly-fusedev-state-1';

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
  /** Each mount's request and its bootstrap's digest, as a daemon taking over needs them. */
  private readonly requests = new Map<string, HandoverMount>();
  private takingOver = false;
  /** A takeover failed half way through restoring: this process cannot try again. */
  private takeoverFailed = false;
  private vhost: VhostService | undefined;
  private fuse: FuseMount | undefined;
  private fuseSpec: FuseMountSpec | undefined;
  private socketPath: string | undefined;
  private readonly errors: Array<{ time: string; message: string }> = [];
  /** `--upgrade`: where the connection taken over from the supervisor is mounted. */
  private takeoverSpec: FuseMountSpec | undefined;
  private tookOver!: () => void;
  private readonly takenOver = new Promise<void>((r) => (this.tookOver = r));
  /** The connection was handed to the supervisor at least once. */
  private handedOver = false;
  private totalErrors = 0;

  constructor(private readonly opts: NydusDaemonOptions) {
    this.vfs = new Vfs({
      log: opts.log.child({ component: 'vfs' }),
      // Images mounted after FUSE_INIT still get READDIRPLUS.
      initFlags: InitFlag.DO_READDIRPLUS | InitFlag.READDIRPLUS_AUTO,
      announceSubmounts: opts.announceSubmounts === true,
      owner: { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 },
    });
    // The passthrough share that Kata mounts here holds nothing to drop at rest; RAFS devices
    // collect at their own rest, and a collection asked for within a second of theirs is theirs.
    this.server = new FuseServer(this.vfs, { log: opts.log.child({ component: 'fuse' }), metrics: opts.metrics, onRest: collectAtRest(opts.log) });
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
  mountFuse(opts: FuseMountSpec): void {
    this.fuse = FuseMount.mount(this.fuseOptions(opts));
    this.fuseSpec = opts;
    this.state = 'RUNNING';
    this.opts.log.info({ mountpoint: opts.mountpoint }, 'FUSE filesystem mounted; state RUNNING');
  }

  /**
   * nydusd `--upgrade`: stays INIT, mounting nothing, until the API's takeover brings the
   * connection of the FUSE filesystem at `spec.mountpoint` and the state of the daemon that
   * served it (READY), and its start (RUNNING).
   */
  awaitTakeover(spec: FuseMountSpec): void {
    if (this.opts.supervisor === undefined) throw new DaemonError('InvalidArguments', 'taking over needs a supervisor');
    this.takeoverSpec = spec;
  }

  private fuseOptions(spec: FuseMountSpec): FuseMountOptions {
    return { mountpoint: spec.mountpoint, server: this.server, log: this.opts.log.child({ component: 'fusedev' }), readOnly: spec.readOnly, fsname: 'rafs', subtype: '', noatime: true };
  }

  /** Serves the VMM until it disconnects, or the FUSE mount until it is unmounted; resolves with the reason. */
  async run(): Promise<string> {
    if (this.takeoverSpec !== undefined) await this.takenOver;
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
    if (this.takeoverSpec !== undefined && this.state === 'INIT') throw new DaemonError('NotReady', 'the daemon is waiting to take over; mount after the takeover');
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
      this.requests.set(mp, await this.handoverMount(mp, req, record));
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
      this.requests.set(mp, await this.handoverMount(mp, req, record));
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
    this.requests.delete(mp);
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
    const onExit = this.opts.onExit;
    if (onExit === undefined) throw new DaemonError('Unsupported', 'this daemon cannot be stopped through the API');
    // Handed over (a live upgrade): stop reading requests, answer those read, keep the mount.
    const keep = this.fuse !== undefined && this.handedOver;
    if (keep) this.state = 'READY';
    setImmediate(() => {
      const stopped = keep ? (this.fuse as FuseMount).stopServing() : Promise.resolve(true);
      void stopped.then((idle) => {
        if (!idle) this.opts.log.warn('requests still unanswered at exit; the next daemon gets them again only with --failover-policy resend');
        onExit(keep);
      });
    });
  }

  /** What a successor needs of a mount: its request, and (with a supervisor) its bootstrap's digest. */
  private async handoverMount(mp: string, request: MountRequest, record: MountRecord): Promise<HandoverMount> {
    const digest = this.opts.supervisor !== undefined && record.type === 'Rafs' ? await bootstrapSha256(request.source) : null;
    return { mountpoint: mp, request, bootstrapSha256: digest };
  }

  /** `PUT /api/v1/daemon/fuse/sendfd`: the state and the /dev/fuse fd to the supervisor. */
  async sendFuseFd(): Promise<void> {
    const supervisor = this.opts.supervisor;
    if (supervisor === undefined) throw new DaemonError('Unsupported', 'no supervisor (--supervisor) to send the FUSE connection to');
    if (this.fuse === undefined || this.state !== 'RUNNING') throw new DaemonError('NotReady', `no FUSE connection to send (the daemon is ${this.state}${this.fuse === undefined ? ', not a FUSE daemon' : ''})`);
    if (this.busy.size > 0) throw new DaemonError('NotReady', 'a mount is being changed; send the state after it');
    let vfs: VfsState;
    try {
      vfs = this.vfs.saveMountTable();
    } catch (e) {
      this.opts.log.warn({ err: errorMessage(e) }, 'sendfd refused');
      throw new DaemonError('Unsupported', errorMessage(e));
    }
    const mounts = [...this.requests.values()];
    const state: HandoverState = { format: HANDOVER_FORMAT, mountpoint: this.fuseSpec?.mountpoint ?? '', session: this.server.saveSession() ?? null, mounts, vfs };
    try {
      await saveToSupervisor(supervisor, Buffer.from(JSON.stringify(state)), this.fuse.deviceFd);
    } catch (e) {
      this.event(`sendfd: ${errorMessage(e)}`);
      throw new DaemonError('Other', errorMessage(e));
    }
    this.handedOver = true;
    this.opts.log.info({ supervisor, mounts: mounts.length }, 'FUSE connection and state sent to the supervisor');
  }

  /**
   * `PUT /api/v1/daemon/fuse/takeover` (`--upgrade` only): the state and the /dev/fuse fd from the
   * supervisor; the mounts are opened again from their requests, the node ids and the session
   * continue where the previous daemon left them. READY afterwards; `start` serves.
   */
  async takeover(): Promise<void> {
    const spec = this.takeoverSpec;
    const supervisor = this.opts.supervisor;
    if (spec === undefined || supervisor === undefined) throw new DaemonError('UnexpectedEvent', `Takeover (the daemon was not started with --upgrade; it is ${this.state})`);
    if (this.state !== 'INIT' || this.takingOver) throw new DaemonError('UnexpectedEvent', `Takeover (the daemon is ${this.state}${this.takingOver ? ', taking over already' : ''})`);
    if (this.takeoverFailed) throw new DaemonError('Other', 'a takeover failed after it began restoring the mount table; start another daemon to take over');
    this.takingOver = true;
    let fd: number | undefined;
    const opened: MountRecord[] = [];
    try {
      let data: Buffer;
      try {
        ({ data, fd } = await restoreFromSupervisor(supervisor));
      } catch (e) {
        throw new DaemonError('Other', errorMessage(e));
      }
      this.opts.log.debug({ bytes: data.length }, 'takeover: state received from the supervisor');
      const state = parseHandover(data);
      const records = new Map<string, { record: MountRecord; mount: HandoverMount }>();
      for (const m of state.mounts) {
        const record = await this.open(m.mountpoint, m.request);
        opened.push(record);
        if (m.bootstrapSha256 !== null && (await bootstrapSha256(m.request.source)) !== m.bootstrapSha256) {
          throw new DaemonError('Other', `the bootstrap ${m.request.source} of ${m.mountpoint} changed since the state was saved`);
        }
        records.set(m.mountpoint, { record, mount: m });
        this.opts.log.debug({ mountpoint: m.mountpoint }, 'takeover: mount opened again');
      }
      // From here a failure leaves the mount table part restored: no second attempt in this process.
      this.takeoverFailed = true;
      try {
        this.vfs.restoreMountTable(state.vfs, (path) => {
          const r = records.get(path);
          if (r === undefined) throw new Error(`mount slot ${path} has no mount request`);
          return r.record.fs;
        });
        for (const mp of records.keys()) if (this.vfs.mounted(mp) === undefined) throw new Error(`the mount table has no slot for ${mp}`);
        if (state.session !== null) this.server.restoreSession(state.session);
      } catch (e) {
        throw new DaemonError('Other', `the saved state cannot be restored: ${errorMessage(e)}`);
      }
      this.fuse = FuseMount.adopt(fd, this.fuseOptions(spec));
      this.fuseSpec = spec;
      for (const [mp, r] of records) {
        this.mounts.set(mp, r.record);
        this.requests.set(mp, r.mount);
      }
      this.handedOver = true;
      this.takeoverFailed = false;
      this.state = 'READY';
      this.opts.log.info({ supervisor, mountpoint: spec.mountpoint, mounts: records.size }, 'took over the FUSE connection; state READY');
      this.tookOver();
    } catch (e) {
      this.event(`takeover: ${errorMessage(e)}`);
      if (this.fuse === undefined && fd !== undefined) native.closeFd(fd);
      for (const r of opened) await r.close().catch(() => undefined);
      throw e;
    } finally {
      this.takingOver = false;
    }
  }

  /** `PUT /api/v1/daemon/start`: a daemon that took over starts serving (RUNNING). */
  start(): void {
    if (this.state !== 'READY' || this.fuse === undefined || this.takeoverSpec === undefined) throw new DaemonError('UnexpectedEvent', `Start (the daemon is ${this.state})`);
    const policy = this.opts.failoverPolicy ?? 'resend';
    if (policy === 'resend') {
      try {
        this.fuse.notifyResend();
        this.opts.log.info('asked the kernel to send again the requests the previous daemon left unanswered');
      } catch (e) {
        this.opts.log.warn({ err: errorMessage(e) }, 'the kernel cannot resend unanswered requests (FUSE_NOTIFY_RESEND needs Linux 6.9); requests the previous daemon had read stay unanswered');
      }
    } else if (policy === 'flush') {
      this.opts.log.warn("--failover-policy flush needs a kernel with a FUSE connection 'flush' control, which Linux does not have; nothing flushed");
    }
    this.fuse.serve();
    this.state = 'RUNNING';
    this.opts.log.info('serving the FUSE connection taken over; state RUNNING');
  }

  /** Stops serving, unmounts everything (but the FUSE mount with `keepMount`: it was handed over). */
  async close(opts: { keepMount?: boolean } = {}): Promise<void> {
    this.state = 'STOPPED';
    this.vhost?.close();
    if (opts.keepMount !== true) await this.fuse?.unmount();
    if (this.socketPath !== undefined) removeStaleSocket(this.socketPath);
    for (const mp of [...this.mounts.keys()]) await this.umount(mp).catch(() => undefined);
  }
}

/** A bootstrap's digest, or null when it cannot be read (then not checked at the takeover). */
async function bootstrapSha256(path: string): Promise<string | null> {
  return fileSha256(path).catch(() => null);
}

/** The state from the supervisor, checked enough to say what is wrong with a foreign one. */
function parseHandover(data: Buffer): HandoverState {
  let v: unknown;
  try {
    v = JSON.parse(data.toString('utf8'));
  } catch {
    v = undefined;
  }
  const st = v as Partial<HandoverState> | undefined;
  if (st === null || typeof st !== 'object' || st.format !== HANDOVER_FORMAT) {
    throw new DaemonError('Other', `the supervisor's state (${data.length} bytes) is not a state this daemon saved (a nydusd's cannot be taken over)`);
  }
  if (!Array.isArray(st.mounts) || typeof st.vfs !== 'object' || st.vfs === null) throw new DaemonError('Other', 'the supervisor\'s state is incomplete');
  for (const m of st.mounts) {
    const r = m?.request as Partial<MountRequest> | undefined;
    const files = r?.prefetch_files;
    const filesOk = files === undefined || files === null || (Array.isArray(files) && files.every((f) => typeof f === 'string'));
    if (typeof m?.mountpoint !== 'string' || typeof r?.source !== 'string' || typeof r.fs_type !== 'string' || typeof r.config !== 'string' || !filesOk) throw new DaemonError('Other', `a mount of the supervisor's state is malformed: ${JSON.stringify(m).slice(0, 200)}`);
  }
  // Each mountpoint once, as the mount table keys it (a saved state's are): `/rafs/a/` beside
  // `/rafs/a` was opened as a second mount that nothing served and no umount could name.
  const seen = new Set<string>();
  for (const m of st.mounts as HandoverMount[]) {
    let normal: string | undefined;
    try {
      normal = normalizeMountPath(m.mountpoint);
    } catch {
      normal = undefined;
    }
    if (normal !== m.mountpoint || seen.has(normal)) throw new DaemonError('Other', `the supervisor's state names the mountpoint ${JSON.stringify(m.mountpoint).slice(0, 200)} ${normal === m.mountpoint ? 'twice' : 'in a form this daemon never saves'}`);
    seen.add(normal);
  }
  return st as HandoverState;
}
