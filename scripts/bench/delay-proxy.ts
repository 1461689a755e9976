/**
 * A delaying TCP proxy for scripts/bench/cold-start.sh: the latency half of an emulated WAN link
 * (the kernel here has no netem; the bandwidth half is a tc htb class on the proxy's port).
 *
 * Usage: node --import tsx scripts/bench/delay-proxy.ts LISTEN_PORT TARGET_PORT DELAY_MS LOG_FILE
 *
 * Accepts on 127.0.0.1:LISTEN_PORT, connects each client to 127.0.0.1:TARGET_PORT, and forwards
 * every chunk of data DELAY_MS after it was read, in each direction, in order (a FIFO per
 * direction; a half-close is forwarded in order too): DELAY_MS = 10 makes a 20 ms round trip.
 * The client's TCP handshake with the proxy is local, so a connection's first client bytes are
 * held until 3 x DELAY_MS after the accept (one emulated handshake round trip, then the one-way
 * delay): a new connection costs one round trip, as on a real link. A direction holding more than
 * 1 MiB (queued, or unsent in the socket) pauses its reader until it drains, so the proxy does not
 * buffer a whole blob ahead of the shaped link (1 MiB is ~84 ms at 100 Mbit/s).
 *
 * It also watches the HTTP/1.1 it carries (best effort: request heads with Content-Length
 * bodies, responses with Content-Length; a chunked response ends the parsing of that connection
 * but not the byte counts) and appends one JSON line to LOG_FILE for each:
 *   {"ev":"req","c":CONN,"t":MS,"m":"GET","p":PATH,"range":"bytes=a-b"|null}          request seen
 *   {"ev":"res","c":CONN,"t":MS,"m":..,"p":..,"range":..,"s":STATUS,"b":BYTES,"t0":MS} response done
 *   {"ev":"close","c":CONN,"t":MS,"up":BYTES,"down":BYTES}                              connection closed
 * t is milliseconds since the proxy started (performance.now()): for a request when the proxy read
 * it from the client (= when the client sent it), for a response when the proxy handed its last
 * byte to the client's side (after the delay; the shaped link may still be draining it), for a
 * close when both sides were closed; every line also has w, the same instant as Unix epoch
 * milliseconds. b is the response's bytes on the wire (head + body); up/down are all bytes of the
 * connection client->target and target->client. The caller truncates LOG_FILE between
 * measurements (lines are appended with O_APPEND).
 * Prints "listening" on stdout when ready.
 *
 *        node --import tsx scripts/bench/delay-proxy.ts --summary LOG_FILE [T0 [T1]] [--timeline FILE]
 *
 * prints a summary of such a log as JSON: connections, requests (manifest / blob / ranged blob
 * GETs / other), bytes down and up (per connection, so all of them: heads, bodies), the sizes
 * of ranged responses, the time from the first request to the last response, the time at least
 * one request was in flight (the union of request-to-response intervals, i.e. time spent waiting
 * on the link) and the most requests in flight at once. With T0 (Unix epoch seconds, e.g. bash's
 * EPOCHREALTIME when the client started): first_request_s, bootstrap_done_s (the end of the first
 * whole-blob GET) and last_response_s relative to it; with T1 too (e.g. when the mount appeared):
 * busy_before_t1_ms and busy_after_t1_ms split busy_ms there. --timeline FILE writes one line per
 * response: start and end (seconds after T0, or after the first request), method, status, bytes,
 * range and path.
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { type Socket, connect, createServer } from 'node:net';
import { performance } from 'node:perf_hooks';

if (process.argv[2] === '--summary') {
  const args = process.argv.slice(3);
  const ti = args.indexOf('--timeline');
  const timeline = ti >= 0 ? args.splice(ti, 2)[1] : undefined;
  summarize(args[0] ?? '', args[1] !== undefined ? Number(args[1]) * 1000 : undefined, args[2] !== undefined ? Number(args[2]) * 1000 : undefined, timeline);
  process.exit(0);
}

function summarize(file: string, t0w?: number, t1w?: number, timelineFile?: string): void {
  type Line = { ev: string; c: number; t: number; w: number; m?: string; p?: string; range?: string | null; s?: number; b?: number; t0?: number; up?: number; down?: number };
  const lines: Line[] = readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Line);
  const res = lines.filter((l) => l.ev === 'res');
  const reqs = lines.filter((l) => l.ev === 'req');
  const closes = lines.filter((l) => l.ev === 'close');
  const closed = new Set(closes.map((l) => l.c));
  const conns = new Set(lines.map((l) => l.c));
  // Bytes of connections still open when the log was read: their finished responses.
  const openDown = res.filter((l) => !closed.has(l.c)).reduce((a, l) => a + (l.b ?? 0), 0);
  const isBlob = (l: Line): boolean => /\/blobs\/[a-z0-9]+:[0-9a-f]+/.test(l.p ?? '');
  const isManifest = (l: Line): boolean => /\/manifests\//.test(l.p ?? '');
  const ranged = res.filter((l) => isBlob(l) && l.m === 'GET' && l.range);
  const sizes = ranged.map((l) => l.b ?? 0).sort((a, b) => a - b);
  const pct = (q: number): number => (sizes.length ? (sizes[Math.min(sizes.length - 1, Math.floor(q * sizes.length))] as number) : 0);
  // Union of [t0, t] over responses, and the most in flight at once.
  // Times as wall clock (ms): t0 of a response is proxy time; w - t converts.
  const wall = (l: Line, t: number): number => t + (l.w - l.t);
  const spans = res.filter((l) => l.t0 !== undefined).map((l) => [wall(l, l.t0 as number), l.w] as const);
  const events = spans.flatMap(([a, b]) => [[a, 1] as const, [b, -1] as const]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let inFlight = 0;
  let maxInFlight = 0;
  let busy = 0;
  let busyBefore = 0;
  let since = 0;
  const split = t1w ?? Number.POSITIVE_INFINITY;
  for (const [t, d] of events) {
    if (inFlight === 0 && d > 0) since = t;
    inFlight += d;
    if (inFlight === 0 && d < 0) {
      busy += t - since;
      busyBefore += Math.max(0, Math.min(t, split) - since);
    }
    maxInFlight = Math.max(maxInFlight, inFlight);
  }
  const first = reqs.length ? Math.min(...reqs.map((l) => l.w)) : 0;
  const last = res.length ? Math.max(...res.map((l) => l.w)) : 0;
  const base = t0w ?? first;
  const rel = (w: number): number => Math.round(w - base) / 1000;
  const bootDone = res.find((l) => isBlob(l) && l.m === 'GET' && !l.range);
  if (timelineFile !== undefined) {
    const rows = res.map((l) => `${rel(wall(l, l.t0 ?? l.t)).toFixed(3).padStart(8)} ${rel(l.w).toFixed(3).padStart(8)} ${(l.m ?? '?').padEnd(4)} ${l.s} ${String(l.b ?? 0).padStart(9)} ${(l.range ?? '-').padEnd(24)} ${l.p}`);
    writeFileSync(timelineFile, `# start_s   end_s  method status bytes range path (seconds after ${t0w !== undefined ? 'T0' : 'the first request'}; end: when the proxy handed the last byte to the link)\n${rows.join('\n')}\n`);
  }
  const out = {
    connections: conns.size,
    requests: reqs.length,
    manifest_requests: reqs.filter(isManifest).length,
    blob_requests: reqs.filter(isBlob).length,
    blob_range_requests: reqs.filter((l) => isBlob(l) && l.range).length,
    other_requests: reqs.filter((l) => !isBlob(l) && !isManifest(l)).length,
    bytes_down: closes.reduce((a, l) => a + (l.down ?? 0), 0) + openDown,
    bytes_up: closes.reduce((a, l) => a + (l.up ?? 0), 0),
    range_bytes: sizes.reduce((a, b) => a + b, 0),
    range_size_min: sizes[0] ?? 0,
    range_size_median: pct(0.5),
    range_size_p90: pct(0.9),
    range_size_max: sizes[sizes.length - 1] ?? 0,
    span_ms: Math.round((last - first) * 10) / 10,
    busy_ms: Math.round(busy * 10) / 10,
    max_in_flight: maxInFlight,
    ...(t0w !== undefined ? { first_request_s: rel(first), bootstrap_done_s: bootDone ? rel(bootDone.w) : null, last_response_s: rel(last) } : {}),
    ...(t1w !== undefined ? { busy_before_t1_ms: Math.round(busyBefore * 10) / 10, busy_after_t1_ms: Math.round((busy - busyBefore) * 10) / 10 } : {}),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

const [listenArg, targetArg, delayArg, logFile] = process.argv.slice(2);
if (!listenArg || !targetArg || !delayArg || !logFile) {
  console.error('usage: delay-proxy.ts LISTEN_PORT TARGET_PORT DELAY_MS LOG_FILE');
  process.exit(2);
}
const listenPort = Number(listenArg);
const targetPort = Number(targetArg);
const delayMs = Number(delayArg);
const HIGH_WATER = 1 << 20;

const now = (): number => Math.round(performance.now() * 100) / 100;
/** Every line also gets w: the wall clock (Unix epoch, milliseconds) of its t. */
const emit = (o: { t: number; [k: string]: unknown }): void => appendFileSync(logFile, `${JSON.stringify({ ...o, w: Math.round((performance.timeOrigin + o.t) * 100) / 100 })}\n`);

interface Exchange {
  m: string;
  p: string;
  range: string | null;
  t0: number;
}

/** Splits one direction's byte stream into HTTP messages (heads + Content-Length bodies). */
class HttpWatcher {
  private buf: Buffer = Buffer.alloc(0);
  private bodyLeft = 0;
  private msgBytes = 0;
  private broken = false;
  /**
   * `onHead` gets each message head and returns its body length (-1: cannot tell, e.g. chunked:
   * stop parsing); `onDone` gets the message's bytes (head + body) when it is complete.
   */
  constructor(
    private readonly onHead: (head: string) => number,
    private readonly onDone: (bytes: number) => void,
  ) {}
  feed(data: Buffer): void {
    let d: Buffer = data;
    while (d.length > 0 && !this.broken) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, d.length);
        this.bodyLeft -= n;
        this.msgBytes += n;
        d = d.subarray(n);
        if (this.bodyLeft === 0) this.onDone(this.msgBytes);
        continue;
      }
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      d = Buffer.alloc(0);
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (this.buf.length > 1 << 20) this.broken = true;
        return;
      }
      const head = this.buf.subarray(0, end).toString('latin1');
      d = this.buf.subarray(end + 4);
      this.buf = Buffer.alloc(0);
      this.msgBytes = end + 4;
      const len = this.onHead(head);
      if (len < 0) {
        this.broken = true;
        return;
      }
      this.bodyLeft = len;
      if (len === 0) this.onDone(this.msgBytes);
    }
  }
}

const contentLength = (head: string): number => {
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return -1;
  const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  return cl ? Number(cl[1]) : 0;
};

/**
 * Forwards from `src` to `dst` `delayMs` after reading, preserving order, and not before
 * `notBefore` (performance.now() time). Reading pauses while more than HIGH_WATER bytes wait,
 * queued here or unsent in `dst`'s buffer (so that the proxy does not buffer a whole blob ahead
 * of the shaped link).
 */
function pipeDelayed(src: Socket, dst: Socket, notBefore: number, onRead: (d: Buffer) => void, onForward: (d: Buffer) => void): void {
  const queue: { due: number; data: Buffer | null }[] = [];
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  const maybeResume = (): void => {
    if (src.isPaused() && queued + dst.writableLength < HIGH_WATER) src.resume();
  };
  const flush = (): void => {
    timer = undefined;
    const t = performance.now();
    while (queue.length > 0 && (queue[0] as { due: number }).due <= t) {
      const { data } = queue.shift() as { due: number; data: Buffer | null };
      if (data === null) {
        dst.end();
        continue;
      }
      queued -= data.length;
      onForward(data);
      if (!dst.destroyed) dst.write(data);
    }
    maybeResume();
    schedule();
  };
  const schedule = (): void => {
    if (timer !== undefined || queue.length === 0) return;
    timer = setTimeout(flush, Math.max(0, (queue[0] as { due: number }).due - performance.now()));
  };
  const due = (): number => Math.max(performance.now() + delayMs, notBefore);
  dst.on('drain', maybeResume);
  src.on('data', (data: Buffer) => {
    onRead(data);
    queue.push({ due: due(), data });
    queued += data.length;
    if (queued + dst.writableLength >= HIGH_WATER) src.pause();
    schedule();
  });
  src.on('end', () => {
    queue.push({ due: due(), data: null });
    schedule();
  });
}

let conns = 0;
const server = createServer({ allowHalfOpen: true }, (client) => {
  const c = ++conns;
  const upstream = connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true });
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  let up = 0;
  let down = 0;
  const pending: Exchange[] = [];
  let current: Exchange | undefined;
  let status = 0;
  const reqWatch = new HttpWatcher(
    (head) => {
      const [m = '?', p = '?'] = head.split('\r\n')[0]?.split(' ') ?? [];
      const range = /\r\nrange:\s*([^\r]*)/i.exec(head)?.[1] ?? null;
      const ex = { m, p, range, t0: now() };
      pending.push(ex);
      emit({ ev: 'req', c, t: ex.t0, m, p, range });
      return contentLength(head);
    },
    () => {},
  );
  const resWatch = new HttpWatcher(
    (head) => {
      current = pending.shift();
      status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      // No body after HEAD, 1xx, 204 or 304, whatever Content-Length says.
      if (current?.m === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)) return 0;
      return contentLength(head);
    },
    (bytes) => {
      emit({ ev: 'res', c, t: now(), m: current?.m, p: current?.p, range: current?.range ?? null, s: status, b: bytes, t0: current?.t0 });
      current = undefined;
    },
  );
  let closed = 0;
  const done = (): void => {
    if (++closed === 2) emit({ ev: 'close', c, t: now(), up, down });
  };
  client.once('close', done);
  upstream.once('close', done);
  const kill = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', kill);
  upstream.on('error', kill);
  // The TCP handshake with the client was local and instant: its first bytes reach the target
  // no earlier than after the round trip a real handshake takes plus the one-way delay.
  const accepted = performance.now();
  // Requests are logged when the client sent them (read here), responses when the proxy hands
  // them to the client's (shaped) side: a request's span is the client's wait, but for the
  // draining of the last bytes through the shaped link.
  pipeDelayed(
    client,
    upstream,
    accepted + 3 * delayMs,
    (d) => {
      up += d.length;
      reqWatch.feed(d);
    },
    () => {},
  );
  pipeDelayed(
    upstream,
    client,
    0,
    () => {},
    (d) => {
      down += d.length;
      resWatch.feed(d);
    },
  );
});
server.listen(listenPort, '127.0.0.1', () => {
  process.stdout.write('listening\n');
});
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => process.exit(0));
