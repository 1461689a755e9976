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
