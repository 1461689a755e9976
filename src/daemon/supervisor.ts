/**
 * The client side of nydus-snapshotter's supervisor socket (nydusd `--supervisor`; the protocol of
 * `dragonflyoss/nydus upgrade/src/backend/unix_domain_socket.rs` and the snapshotter's
 * `pkg/supervisor`): to save, a daemon connects, sends its state with the /dev/fuse fd attached
 * (SCM_RIGHTS) and closes; to restore, the next daemon connects and reads the state and the fd to
 * the end of the stream. The supervisor keeps the bytes opaque, so the state's format is the
 * daemon's own. Every wait is bounded: a supervisor that never answers fails the request.
 */
import { errorMessage, pollUntil } from '../base/index.js';
import { native } from '../native/index.js';

const UV_READABLE = 1;
const UV_WRITABLE = 2;
/** The largest state accepted back (nydusd's own limit is 32 KiB; ours holds lookup counts). */
export const MAX_STATE_BYTES = 64 << 20;

export class SupervisorError extends Error {
  override name = 'SupervisorError';
}

/**
 * Waits for a socket's readiness, each wait bounded by one deadline. One uv_poll handle per fd for
 * the whole exchange: libuv allows one per fd, and a closing one takes the fd out of epoll under a
 * new one.
 */
class Readiness {
  private readonly poller;
  private waiter: ((ev: number) => void) | undefined;

  constructor(
    fd: number,
    private readonly deadline: number,
    private readonly what: string,
  ) {
    this.poller = new native.Poller(fd, (ev) => this.waiter?.(ev));
  }

  wait(events: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.poller.stop();
          this.waiter = undefined;
          reject(new SupervisorError(`${this.what}: the supervisor did not answer in time`));
        },
        Math.max(0, this.deadline - Date.now()),
      );
      this.waiter = (ev) => {
        clearTimeout(timer);
        this.poller.stop();
        this.waiter = undefined;
        if (ev < 0) reject(new SupervisorError(`${this.what}: the supervisor socket failed (errno ${-ev})`));
        else resolve();
      };
      this.poller.start(events);
    });
  }

  close(): void {
    this.poller.close();
  }
}

/**
 * Connects without blocking the event loop: a supervisor that listens but does not accept (its
 * queue full) is tried again every 1-50 ms until `deadline`, when it is an error.
 */
async function connect(path: string, what: string, deadline: number): Promise<number> {
  return pollUntil(
    () => {
      let fd: number;
      try {
        fd = native.connectUnix(path, false, true);
      } catch (e) {
        throw new SupervisorError(`${what}: cannot connect to the supervisor at ${path}: ${errorMessage(e)}`, { cause: e });
      }
      return fd >= 0 ? fd : undefined;
    },
    deadline,
    () => new SupervisorError(`${what}: the supervisor at ${path} did not accept the connection in time`),
  );
}

/** Sends `data` with `fd` attached to the supervisor listening at `path`. */
export async function saveToSupervisor(path: string, data: Buffer, fd: number, timeoutMs = 10_000): Promise<void> {
  const what = 'sending the daemon state';
  const deadline = Date.now() + timeoutMs;
  const sock = await connect(path, what, deadline);
  const readiness = new Readiness(sock, deadline, what);
  try {
    let sent = 0;
    while (sent < data.length) {
      // The fd goes with the first bytes that leave; a full socket sends nothing and is waited on.
      const n = native.sendMsg(sock, data.subarray(sent), sent === 0 ? [fd] : []);
      if (n === 0) await readiness.wait(UV_WRITABLE);
      sent += n;
    }
  } catch (e) {
    if (e instanceof SupervisorError) throw e;
    throw new SupervisorError(`${what}: ${errorMessage(e)}`, { cause: e });
  } finally {
    readiness.close();
    native.closeFd(sock);
  }
}

/** Reads the state and the fd the supervisor at `path` kept; the caller owns the fd. */
export async function restoreFromSupervisor(path: string, timeoutMs = 10_000): Promise<{ data: Buffer; fd: number }> {
  const what = 'receiving the daemon state';
  const deadline = Date.now() + timeoutMs;
  const sock = await connect(path, what, deadline);
  const readiness = new Readiness(sock, deadline, what);
  const parts: Buffer[] = [];
  const fds: number[] = [];
  let size = 0;
  try {
    for (;;) {
      const m = native.recvMsg(sock, 256 << 10);
      if (m === null) {
        await readiness.wait(UV_READABLE);
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
    throw new SupervisorError(`${what}: ${errorMessage(e)}`, { cause: e });
  } finally {
    readiness.close();
    native.closeFd(sock);
  }
}
