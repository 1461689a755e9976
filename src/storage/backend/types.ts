/**
 * The storage backend interface: ranged reads of blobs by id. Implementations (localfs, registry,
 * S3, proxy) and wrappers (retry, mirrors) compose as `BlobBackend -> BlobBackend`.
 */

export interface ReadOptions {
  signal?: AbortSignal;
  /**
   * Where the bytes go: a backend that fills a buffer of its own takes it from here (the device's
   * buffer pool), one that receives a buffer whole (a proxy's body) may ignore it.
   */
  allocate?: (length: number) => Buffer;
}

export interface BlobBackend {
  /** Short name for logs and metrics ("localfs", "registry"). */
  readonly kind: string;
  /**
   * Reads exactly `length` bytes at `offset` of blob `id`. A range past the end of the blob, a
   * missing blob or a short answer is an error (BackendError / NotFoundError).
   */
  read(id: string, offset: number, length: number, opts?: ReadOptions): Promise<Buffer>;
  /** Size of the blob in bytes. */
  size(id: string, opts?: ReadOptions): Promise<number>;
  /**
   * Reads from the origin alone, past every caching route (a proxy, mirrors): for data a route
   * served that failed its chunk verification. Absent where there is no such route, or no
   * fallback to the origin.
   */
  readonly readOrigin?: (id: string, offset: number, length: number, opts?: ReadOptions) => Promise<Buffer>;
  /**
   * Tells a backend with routes that `data`, a buffer its `read` returned, failed verification:
   * the route that served it is failed over at once (wrong bytes are no passing fault). Returns
   * false when the origin itself served it, so that reading the origin again cannot help.
   */
  readonly reportCorrupt?: (data: Buffer) => boolean;
  close(): Promise<void>;
}
