/**
 * Logging through pino (JSON lines on stderr). Components receive a `Logger` (usually a child
 * with a `component` binding) rather than importing a global.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(level: LogLevel = 'info', destination: number = 2): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: destination, sync: true }));
}

/** A logger that drops everything (tests, library use without a logger). */
export const silentLogger: Logger = pino({ level: 'silent' });
