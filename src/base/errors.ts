/**
 * Errors with stable codes. Every layer throws these (or lets a Node system error through);
 * each boundary maps them once: errno in `fuse/server`, HTTP status in `api`, exit code and
 * message in `cli`.
 */

/** Stable machine-readable error codes. Never renumber or rename: scripts and APIs match them. */
export const ErrorCode = {
  /** A malformed or hostile image structure (bootstrap, blob meta, ToC, tar layer). */
  Format: 'E_FORMAT',
  /** Data that does not match its digest (a chunk, a ToC item, an inode digest). */
  Integrity: 'E_INTEGRITY',
  /** A feature the image uses that Damselfly does not implement. */
  Unsupported: 'E_UNSUPPORTED',
  /** Wrong flags, arguments or configuration given by the user. */
  Usage: 'E_USAGE',
  /** Something named by the user or the image does not exist. */
  NotFound: 'E_NOT_FOUND',
  /** A storage backend failed (network, HTTP status, short read). */
  Backend: 'E_BACKEND',
  /** An operation was cancelled or timed out. */
  Aborted: 'E_ABORTED',
  /** A bug: an invariant the code itself should have kept. */
  Internal: 'E_INTERNAL',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class DamselflyError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The image (or a layer) is malformed. `where` names the structure, e.g. "v6 inode nid 133". */
export class FormatError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Format, message, options);
  }
}

export class IntegrityError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Integrity, message, options);
  }
}

export class UnsupportedError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Unsupported, message, options);
  }
}

export class UsageError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Usage, message, options);
  }
}

export class NotFoundError extends DamselflyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.NotFound, message, options);
  }
}

export class BackendError extends DamselflyError {
  /** Whether trying again may help (timeouts, resets, 5xx). */
  readonly retryable: boolean;

  constructor(message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(ErrorCode.Backend, message, options);
    this.retryable = options?.retryable ?? false;
  }
}

/** A Node.js system error (`ENOENT`, …) or one raised by the addon in the same shape. */
export interface SysError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

export function isSysError(e: unknown, code?: string): e is SysError {
  return (
    e instanceof Error &&
    typeof (e as SysError).code === 'string' &&
    typeof (e as SysError).syscall === 'string' &&
    (code === undefined || (e as SysError).code === code)
  );
}

/**
 * `e`, a system error from a read or write through a handle (which names no file: "ENOSPC: no
 * space left on device, write"), with the file's path set, so that the user is told which file.
 */
export function namingFile(e: unknown, path: string | Buffer): unknown {
  if (isSysError(e) && e.path === undefined) e.path = path.toString();
  return e;
}

/** The message of anything thrown, for logs and CLI output. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Asserts an internal invariant; a failure is a bug in Damselfly, not in its input. */
export function invariant(cond: unknown, message: string): asserts cond {
  if (!cond) throw new DamselflyError(ErrorCode.Internal, `internal error: ${message}`);
}
