/**
 * Logging through pino (JSON lines on stderr). Components receive a `Logger` (usually a child
 * with a `component` binding) rather than importing a global.
 */
import { type DestinationStream, pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A logger writing JSON lines to an fd (stderr by default) or to a stream of its own (syslog). */
export function createLogger(level: LogLevel = 'info', destination: number | DestinationStream = 2): Logger {
  const dest = typeof destination === 'number' ? pino.destination({ dest: destination, sync: true }) : destination;
  return pino({ level, base: { pid: process.pid }, timestamp: () => `,"time":"${isoTime(Date.now())}"` }, dest);
}

const pad2 = (n: number): string => (n < 10 ? `0${n}` : `${n}`);

/**
 * `new Date(ms).toISOString()` by arithmetic (proleptic Gregorian calendar, days from the epoch to
 * year/month/day as in H. Hinnant's `civil_from_days`), for years 0–9999. The first
 * `toISOString` of a process initialises V8's date and time-zone machinery: 9–15 ms with a cold
 * page cache, paid by the first log line of a daemon starting in front of a waiting container.
 */
export function isoTime(ms: number): string {
  const days = Math.floor(ms / 86_400_000);
  let rest = ms - days * 86_400_000;
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const hour = Math.floor(rest / 3_600_000);
  rest -= hour * 3_600_000;
  const minute = Math.floor(rest / 60_000);
  rest -= minute * 60_000;
  const second = Math.floor(rest / 1000);
  const milli = rest - second * 1000;
  return `${String(year).padStart(4, '0')}-${pad2(month)}-${pad2(day)}T${pad2(hour)}:${pad2(minute)}:${pad2(second)}.${String(milli).padStart(3, '0')}Z`;
}

/** A logger that drops everything (tests, library use without a logger). */
export const silentLogger: Logger = pino({ level: 'silent' });

/**
 * Keeps a repeated warning or error from flooding the log (a full cache disk fails every chunk's
 * store; a guest can read a broken chunk in a loop): the first event of each kind is logged, then
 * at most one per `intervalMs`, which says how many were left out since (`suppressed`). Counters
 * (metrics) keep the totals.
 */
export class LogLimiter {
  private readonly kinds = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly intervalMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Whether an event of `kind` is to be logged now: undefined if not (it is counted), else the
   * number of events of that kind left out before it.
   */
  admit(kind: string): number | undefined {
    const t = this.now();
    const k = this.kinds.get(kind);
    if (k !== undefined && t - k.at < this.intervalMs) {
      k.suppressed++;
      return undefined;
    }
    this.kinds.set(kind, { at: t, suppressed: 0 });
    return k?.suppressed ?? 0;
  }

  /** Logs `msg` at `level` if an event of `kind` is admitted, with `suppressed` when some were left out. */
  log(logger: Logger, level: 'warn' | 'error', kind: string, obj: Record<string, unknown>, msg: string): void {
    const suppressed = this.admit(kind);
    if (suppressed !== undefined) logger[level](suppressed > 0 ? { ...obj, suppressed } : obj, msg);
  }
}
