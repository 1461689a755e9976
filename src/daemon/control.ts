/**
 * What the control API may ask of a daemon, in nydusd's terms (dragonflyoss/nydus `api/src/http.rs`,
 * `service/src/daemon.rs`): daemon information and state, log level, mounts, metrics. Failures
 * are `DaemonError`s whose `kind` the API turns into an HTTP status, once.
 */

/** nydusd's `BuildTimeInfo`; runtime-rs requires all five strings. */
export interface BuildInfo {
  package_ver: string;
  git_commit: string;
  build_time: string;
  profile: string;
  rustc: string;
}

/** nydusd's `DaemonState`, serialised by name. */
export type DaemonState = 'INIT' | 'RUNNING' | 'READY' | 'STOPPED' | 'UNKNOWN';

export type BackendType = 'Rafs' | 'PassthroughFs';

/** nydusd's `FsBackendDescriptor`. */
export interface BackendDescriptor {
  backend_type: BackendType;
  mountpoint: string;
  /** RFC 3339 time of the mount. */
  mounted_time: string;
  /** The mount's configuration, credentials removed (null for passthrough). */
  config: unknown;
}

/** nydusd's `DaemonInfo` (`GET /api/v1/daemon`); `backend_collection` is null in API v2. */
export interface DaemonInfo {
  version: BuildInfo;
  id: string | null;
  supervisor: string | null;
  state: DaemonState;
  backend_collection: Record<string, BackendDescriptor> | null;
}

/** nydusd's `ApiMountCmd`: the body of `POST|PUT /api/v1/mount?mountpoint=…`. */
export interface MountRequest {
  /** The RAFS bootstrap file, or the directory a passthrough mount shares. */
  source: string;
  /** `rafs`, `passthrough_fs`, `passthroughfs` or `passthrough`. */
  fs_type: string;
  /** The nydusd configuration (JSON v1 or v2, or TOML v2) as a string; '' for passthrough. */
  config: string;
  /** Image paths to prefetch first. */
  prefetch_files?: string[] | null;
}

export type MetricsKind = 'global' | 'files' | 'pattern' | 'backend' | 'blobcache';

/** Why a daemon request failed; nydusd's `DaemonErrorKind` plus the metrics `NoCounter`. */
export type DaemonErrorKind = 'NotReady' | 'Unsupported' | 'UnexpectedEvent' | 'AlreadyExists' | 'NotFound' | 'InvalidArguments' | 'NoCounter' | 'Other';

export class DaemonError extends Error {
  constructor(
    readonly kind: DaemonErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DaemonError';
  }
}

export interface DaemonControl {
  info(withBackends: boolean): DaemonInfo;
  /** `PUT /api/v1/daemon` `{"log_level": …}`. */
  configure(conf: { log_level: string }): void;
  mount(mountpoint: string, req: MountRequest): Promise<void>;
  /** Replaces the RAFS image at a mount point. */
  remount(mountpoint: string, req: MountRequest): Promise<void>;
  umount(mountpoint: string): Promise<void>;
  /** Metrics of one mount (`id` = its mount point; without it, the only RAFS mount). */
  metrics(kind: MetricsKind, id: string | undefined, opts?: { latest?: boolean }): unknown;
  /** Requests being served now; empty when idle. */
  inflight(): unknown[];
  /** RAFS superblock information of a mount (`GET /api/v1/daemon/backend`). */
  backendInfo(mountpoint: string): unknown;
  /** Recent error events (`GET /api/v1/daemon/events`). */
  events(): unknown;
  /** `PUT /api/v1/daemon/exit`: stop serving and exit. */
  exit(): void;
  /** `PUT /api/v1/daemon/start`: start a daemon waiting for it (after a takeover). */
  start(): void;
  /** `PUT /api/v1/daemon/fuse/sendfd`: the FUSE connection and the daemon's state to the supervisor. */
  sendFuseFd(): Promise<void>;
  /** `PUT /api/v1/daemon/fuse/takeover`: take them back from the supervisor (a daemon started with `--upgrade`). */
  takeover(): Promise<void>;
}
