/**
 * The one place errors become HTTP answers, as nydusd's `translate_status_code` and
 * `error_response` make them: body `{"code":"UNDEFINED","message":<Debug of the HttpError>}`;
 * NotReady 503, Unsupported 501, UnexpectedEvent 400, a metrics counter that does not exist 404,
 * anything else 500. A request the router cannot take (method, body, query) is a 400, an
 * unknown path a 404.
 */
import { errorMessage } from '../base/index.js';
import { DaemonError } from '../daemon/control.js';

/** The request itself is wrong (nydusd `HttpError::BadRequest`, `ParseBody`, `QueryString`). */
export class BadRequest extends Error {
  constructor(readonly debug: string) {
    super(debug);
  }
}

/** Which family of nydusd `ApiError` an operation reports its failures in. */
export type Family = 'daemon' | 'mount' | 'metrics';

export interface ErrorAnswer {
  status: number;
  body: { code: string; message: string };
}

function quoted(s: string): string {
  return JSON.stringify(s);
}

/** nydusd's `DaemonErrorKind` in Debug form. */
function kindDebug(e: DaemonError): string {
  switch (e.kind) {
    case 'NotReady':
      return 'NotReady';
    case 'Unsupported':
      return 'Unsupported';
    case 'UnexpectedEvent':
      return `UnexpectedEvent(${quoted(e.message)})`;
    default:
      return `Other(${quoted(e.message)})`;
  }
}

function statusOf(e: unknown): number {
  if (!(e instanceof DaemonError)) return 500;
  switch (e.kind) {
    case 'NotReady':
      return 503;
    case 'Unsupported':
      return 501;
    case 'UnexpectedEvent':
      return 400;
    case 'NoCounter':
      return 404;
    default:
      return 500;
  }
}

/**
 * The answer to a failed operation: `op` is nydusd's HttpError variant of the route (`Mount`,
 * `DaemonInfo`, `GlobalMetrics`, …), `family` its ApiError kind.
 */
export function errorAnswer(e: unknown, op: string, family: Family): ErrorAnswer {
  if (e instanceof BadRequest) return { status: 400, body: { code: 'UNDEFINED', message: e.debug } };
  const d = e instanceof DaemonError ? e : new DaemonError('Other', errorMessage(e));
  let inner: string;
  if (family === 'mount') inner = `MountFilesystem(${kindDebug(d)})`;
  else if (family === 'metrics') inner = d.kind === 'NoCounter' ? 'Metrics(Stats(NoCounter))' : `Metrics(Daemon(${kindDebug(d)}))`;
  else inner = `DaemonAbnormal(${kindDebug(d)})`;
  return { status: statusOf(d), body: { code: 'UNDEFINED', message: `${op}(${inner})` } };
}

export function noRoute(): ErrorAnswer {
  return { status: 404, body: { code: 'UNDEFINED', message: 'NoRoute' } };
}

export function badRequest(debug = 'BadRequest'): ErrorAnswer {
  return { status: 400, body: { code: 'UNDEFINED', message: debug } };
}
