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
  /**
   * Nobody waits for it yet (the prefetch): a backend that queues work may serve it after the
   * reads readers wait for. See `BlobBackend.expedite`.
   */
  background?: boolean;
  /**
   * Called as the answer arrives, with how many of its bytes (from its start) are in the buffer
   * `allocate` gave (a retried read starts over); a backend that receives its answer whole may
   * call it only at the end, or not at all.
   */
  onProgress?: (bytes: number) => void;
}

/** A range of a blob's stored (compressed) bytes. */
export interface BlobRange {
  /** Blob id. */
  id: string;
  offset: number;
  length: number;
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
  /** A reader now waits for this range, which a background read is fetching: start it now. */
  expedite?(id: string, offset: number, length: number): void;
  /**
   * Gets ready to read these blobs (a local backend opens their files), called once the image is
   * served and before a first read needs them, so that the read does not wait for it. Resolves
   * with the blobs it could not prepare and why; each read of them reports its own error.
   */
  prepare?(ids: string[]): Promise<Array<{ id: string; err: string }>>;
  close(): Promise<void>;
}
