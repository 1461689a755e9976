/**
 * Shared pieces of the subcommands: option parsing helpers (commander's), the logger, JSON
 * output, and running a command body (its errors become messages and exit codes in `exit.ts`).
 */
import { InvalidArgumentError } from 'commander';
import { LOG_LEVELS, type LogLevel, type Logger, createLogger } from '../base/index.js';
import { EXIT_OK, reportError } from './exit.js';

export { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, reportError } from './exit.js';
export { progressBar } from './progress.js';

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

/** A compression level: a whole number (the build checks its range for the algorithm). */
export function parseLevel(v: string): number {
  if (!/^\d{1,3}$/.test(v.trim())) throw new InvalidArgumentError('a whole number such as 3 or 19');
  return Number(v);
}

/** A count: a whole number, 0 or more. */
export function parseCount(v: string): number {
  const n = Number(v.trim());
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('a whole number, 0 or more');
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


/** Runs a command body; sets the exit code from its result or error. */
export async function run(body: () => Promise<number | void>): Promise<void> {
  try {
    process.exitCode = (await body()) ?? EXIT_OK;
  } catch (e) {
    process.exitCode = reportError(e);
  }
}
