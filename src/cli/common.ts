/**
 * Shared pieces of the command line: option parsing helpers, the logger, progress bars, JSON
 * output, and the one place where errors become messages and exit codes.
 */
import { SingleBar } from 'cli-progress';
import { InvalidArgumentError } from 'commander';
import { DamselflyError, ErrorCode, LOG_LEVELS, type LogLevel, type Logger, createLogger, errorMessage, isSysError } from '../base/index.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface GlobalOptions {
  logLevel: LogLevel;
}

export function parseLogLevel(v: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(v)) throw new InvalidArgumentError(`one of ${LOG_LEVELS.join(', ')}`);
  return v as LogLevel;
}

/** "4096", "0x1000", "4K", "1M", "1MiB" → bytes. */
export function parseSize(v: string): number {
  const m = /^(0x[0-9a-fA-F]+|\d+)\s*([kKmMgGtT]?)(i?[bB])?$/.exec(v.trim());
  if (m === null) throw new InvalidArgumentError('a size such as 4096, 0x100000, 64K or 1M');
  const base = Number(m[1]);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] ?? '').toLowerCase()] as number;
  const n = base * mult;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('size too large');
  return n;
}

export function oneOf<T extends string>(values: readonly T[]): (v: string) => T {
  return (v: string) => {
    if (!(values as readonly string[]).includes(v)) throw new InvalidArgumentError(`one of ${values.join(', ')}`);
    return v as T;
  };
}

let logger: Logger | undefined;

export function setupLogger(level: LogLevel): Logger {
  logger = createLogger(level);
  return logger;
}

export function getLogger(): Logger {
  return (logger ??= createLogger('info'));
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
}

/** A progress bar on stderr when it is a terminal; otherwise nothing. */
export function progressBar(label: string): { update(done: number, total?: number): void; stop(): void } {
  if (!process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar({
    stream: process.stderr,
    format: `${label} [{bar}] {percentage}% | {value}/{total}`,
    hideCursor: true,
    clearOnComplete: true,
  });
  let started = false;
  return {
    update(done: number, total?: number) {
      if (!started) {
        bar.start(total ?? done, done);
        started = true;
      }
      if (total !== undefined) bar.setTotal(total);
      else if (done > bar.getTotal()) bar.setTotal(done);
      bar.update(done);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

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

/** Runs a command body; sets the exit code from its result or error. */
export async function run(body: () => Promise<number | void>): Promise<void> {
  try {
    process.exitCode = (await body()) ?? EXIT_OK;
  } catch (e) {
    process.exitCode = reportError(e);
  }
}
