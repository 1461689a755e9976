/**
 * The client side of nydus-snapshotter's supervisor socket (nydusd `--supervisor`; the protocol of
 * `dragonflyoss/nydus upgrade/src/backend/unix_domain_socket.rs` and the snapshotter's
 * `pkg/supervisor`): to save, a daemon connects, sends its state with the /dev/fuse fd attached
 * (SCM_RIGHTS) and closes; to restore, the next daemon connects and reads the state and the fd to
 * the end of the stream. The supervisor keeps the bytes opaque, so the state's format is the
 * daemon's own. Every wait is bounded: a supervisor that never answers fails the request.
 */
import { errorMessage } from '../base/index.js';
import { native } from '../native/index.js';

const UV_READABLE = 1;
const UV_WRITABLE = 2;
/** The largest state accepted back (nydusd's own limit is 32 KiB; ours holds lookup counts). */
export const MAX_STATE_BYTES = 64 << 20;

export class SupervisorError extends Error {
  override name = 'SupervisorError';
}

/** Waits until `fd` is ready for `events`, or fails after `deadline` (ms since the epoch). */
function ready(fd: number, events: number, deadline: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const poller = new native.Poller(fd, (ev) => {
      clearTimeout(timer);
      poller.close();
      if (ev < 0) reject(new SupervisorError(`${what}: the supervisor socket failed (errno ${-ev})`));
      else resolve();
    });
    const timer = setTimeout(
      () => {
        poller.close();
        reject(new SupervisorError(`${what}: the supervisor did not answer in time`));
      },
      Math.max(0, deadline - Date.now()),
    );
    poller.start(events);
  });
}

function connect(path: string, what: string): number {
  try {
    return native.connectUnix(path);
  } catch (e) {
    throw new SupervisorError(`${what}: cannot connect to the supervisor at ${path}: ${errorMessage(e)}`, { cause: e });
  }
}

/** Sends `data` with `fd` attached to the supervisor listening at `path`. */
export async function saveToSupervisor(path: string, data: Buffer, fd: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const sock = connect(path, 'sending the daemon state');
  try {
    let sent = 0;
    while (sent < data.length) {
      // The fd goes with the first bytes that leave; a full socket sends nothing and is waited on.
      const n = native.sendMsg(sock, data.subarray(sent), sent === 0 ? [fd] : []);
      if (n === 0) await ready(sock, UV_WRITABLE, deadline, 'sending the daemon state');
      sent += n;
    }
  } catch (e) {
    if (e instanceof SupervisorError) throw e;
    throw new SupervisorError(`sending the daemon state: ${errorMessage(e)}`, { cause: e });
  } finally {
    native.closeFd(sock);
  }
}

/** Reads the state and the fd the supervisor at `path` kept; the caller owns the fd. */
export async function restoreFromSupervisor(path: string, timeoutMs = 10_000): Promise<{ data: Buffer; fd: number }> {
  const deadline = Date.now() + timeoutMs;
  const sock = connect(path, 'receiving the daemon state');
  const parts: Buffer[] = [];
  const fds: number[] = [];
  let size = 0;
  try {
    for (;;) {
      const m = native.recvMsg(sock, 256 << 10);
      if (m === null) {
        await ready(sock, UV_READABLE, deadline, 'receiving the daemon state');
        continue;
      }
      fds.push(...m.fds);
      if (m.truncatedFds) throw new SupervisorError('receiving the daemon state: the supervisor sent more fds than fit');
      if (m.data.length === 0) break;
      size += m.data.length;
      if (size > MAX_STATE_BYTES) throw new SupervisorError(`receiving the daemon state: more than ${MAX_STATE_BYTES} bytes`);
      parts.push(m.data);
    }
    const [fd, ...extra] = fds;
    fds.length = 0;
    for (const f of extra) native.closeFd(f);
    if (fd === undefined) throw new SupervisorError('receiving the daemon state: the supervisor sent no file descriptor');
    return { data: Buffer.concat(parts), fd };
  } catch (e) {
    for (const f of fds) native.closeFd(f);
    if (e instanceof SupervisorError) throw e;
    throw new SupervisorError(`receiving the daemon state: ${errorMessage(e)}`, { cause: e });
  } finally {
    native.closeFd(sock);
  }
}
