/**
 * Logging to syslog, as virtiofsd's `--syslog`: Kata's Go runtime starts virtiofsd with it and
 * connects the daemon's stdout and stderr to /dev/null, so syslog is where its log goes.
 *
 * Each log line becomes one datagram on the syslog socket (/dev/log; `DAMSELFLY_SYSLOG_SOCKET`
 * names another), in the form syslog daemons and journald parse: `<PRI>IDENT[PID]: MESSAGE`, with
 * facility daemon, the severity from the line's level, and no timestamp (the receiver stamps
 * it). MESSAGE is the line's `msg` followed by its other fields as JSON (cut at 16 K). The socket is
 * non-blocking: a line the receiver has no room for is dropped and counted, and the next line sent
 * says how many were, so that a stalled syslog daemon never stalls the daemon. A receiver that went
 * away (restarted) is connected to again.
 */
import type { DestinationStream } from 'pino';
import { errorMessage } from '../base/index.js';
import { native } from '../native/index.js';

export const SYSLOG_SOCKET = '/dev/log';
const LOG_DAEMON = 3 << 3;
/** Longer messages are cut (a datagram must fit the socket's buffer; syslog daemons cut too). */
const MAX_MESSAGE = 16 << 10;
/** pino's levels (trace 10 … fatal 60) as syslog severities. */
function severity(level: number): number {
  if (level >= 60) return 2; // crit
  if (level >= 50) return 3; // err
  if (level >= 40) return 4; // warning
  if (level >= 30) return 6; // info
  return 7; // debug
}

export class SyslogStream implements DestinationStream {
  private fd: number;
  private dropped = 0;

  /** Connects to the syslog socket; throws (a SysError naming it) when nothing listens there. */
  constructor(
    private readonly ident: string,
    private readonly path: string = process.env['DAMSELFLY_SYSLOG_SOCKET'] ?? SYSLOG_SOCKET,
  ) {
    this.fd = native.connectUnix(path, true);
  }

  write(line: string): void {
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      rec = { level: 30, msg: line.trimEnd() };
    }
    const { level, msg, time: _time, pid: _pid, ...rest } = rec;
    const text = `${typeof msg === 'string' ? msg : ''}${Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : ''}`;
    const note = this.dropped > 0 ? `(${this.dropped} earlier lines could not be sent) ` : '';
    const message = `${note}${text}`;
    const cut = message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message;
    const datagram = Buffer.from(`<${LOG_DAEMON | severity(typeof level === 'number' ? level : 30)}>${this.ident}[${process.pid}]: ${cut}`);
    if (this.send(datagram)) this.dropped = 0;
    else this.dropped++;
  }

  /** Sends one datagram; false when it was dropped (no room, or no receiver even after reconnecting). */
  private send(datagram: Buffer): boolean {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        return native.sendMsg(this.fd, datagram) > 0;
      } catch (e) {
        if (attempt > 0) return false;
        // The receiver went away (ECONNREFUSED, ENOTCONN: a restarted journald): once more on a new socket.
        try {
          const fd = native.connectUnix(this.path, true);
          native.closeFd(this.fd);
          this.fd = fd;
        } catch {
          process.stderr.write(`damselfly: syslog ${this.path}: ${errorMessage(e)}\n`);
          return false;
        }
      }
    }
    return false;
  }
}
