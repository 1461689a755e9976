/**
 * Exit codes, and the one place where errors become the message and exit code the user sees.
 * Kept apart from the subcommands' helpers (commander, cli-progress): the virtiofsd entry point
 * uses it without loading either.
 */
import { DamselflyError, ErrorCode, errorMessage, isSysError } from '../base/index.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Maps an error to the message and exit code the user sees. */
export function reportError(e: unknown): number {
  let code = EXIT_FAILURE;
  let message = errorMessage(e);
  if (e instanceof DamselflyError) {
    if (e.code === ErrorCode.Usage || e.code === ErrorCode.NotFound) code = EXIT_USAGE;
    if (e.code === ErrorCode.Internal) message += `\n${e.stack ?? ''}`;
  } else if (isSysError(e)) {
    message = `${e.path ? `${e.path}: ` : ''}${e.message}`;
  } else if (!(e instanceof Error)) {
    message = String(e);
  } else if (!(e instanceof RangeError) && !(e instanceof TypeError)) {
    message = e.message;
  } else {
    message = `internal error: ${e.stack ?? e.message}`;
  }
  process.stderr.write(`damselfly: ${message}\n`);
  return code;
}

/**
 * The signals that stop a daemon cleanly (unmount, close the cache, exit): SIGINT, SIGTERM and
 * SIGHUP — a mount started from a terminal that closes gets SIGHUP, whose default action would
 * kill the process and leave a dead mount behind (libfuse's daemons handle the same three).
 * Each is handled once; the returned function removes the handlers.
 */
export function onStopSignals(stop: () => void): () => void {
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signals) process.once(s, stop);
  return () => {
    for (const s of signals) process.off(s, stop);
  };
}
