/**
 * Test guests: a real Linux guest under QEMU (TCG) mounting virtio-fs from a vhost-user backend,
 * for tests, the demo and benchmarks. A thin layer over scripts/guest/run-guest.sh (which owns the
 * QEMU command line) and scripts/guest/build-initramfs.sh (kernel, busybox, modules, /init; see
 * its header for the guest side: markers, boot counter, /bin/xattrs).
 *
 * API
 *   guestMissing(): string | undefined
 *       Why a guest cannot boot here (no QEMU, kernel, busybox, cpio), or undefined.
 *   buildInitramfs({ out? }): Promise<GuestImage>
 *       Builds or finds the cached initramfs: { kernel, kver, initramfs, modules, builtin,
 *       xattrsHelper } (xattrsHelper: the static helper's host path, also /bin/xattrs in the guest).
 *   bootGuest(options): Promise<Guest>
 *       Starts QEMU and returns at once. Options:
 *         devices: [{ socket, tag, queueSize?, requestQueues? }]   vhost-user-fs-pci devices,
 *                  mounted in the guest at /mnt/<tag> (unless noMount)
 *         script: shell text the guest runs as /check.sh (busybox sh; env DAMSELFLY_BOOT,
 *                 DAMSELFLY_TAGS, DAMSELFLY_MNT); its exit status is the guest's status
 *         files: { '/guest/path': '/host/path' }   more files in the guest's initramfs
 *         memory ('1G'), memBackend ('memfd' | 'file' = Kata's memory-backend-file), memPath
 *         ('/dev/shm'), smp (1), append (kernel args), qemuArgs (extra QEMU arguments)
 *         qmp: true for a QMP socket (needed by qmp/hotplugMemory/reset/stop-by-quit)
 *         reboots: N, the guest reboots itself N times, running the script each boot
 *         hold: true, the guest keeps its mounts and waits after the script (for QMP work);
 *               end it with stop()
 *         noMount: true, the guest mounts nothing (the script does)
 *         timeoutMs (180 s): QEMU is killed after this long
 *         keepOnBackendLoss: keep QEMU when a backend closes its socket (by default QEMU is
 *                 stopped at once, exit code 125: QEMU 7.2 would leave the guest hanging)
 *         onConsoleLine(line): every console line as it arrives (\r stripped)
 *         logFile: also write the console there
 *   Guest (the handle)
 *     console, lines, stderr        what the guest printed so far; run-guest.sh's stderr
 *     exits, status, boots          DAMSELFLY-GUEST-EXIT statuses so far; the first non-zero of
 *                                   them, else 0 (null before any); DAMSELFLY-GUEST-BOOT count
 *     output(boot?)                 the script's lines (between -BEGIN and -END) of one boot,
 *                                   default the last one that began; kernel printk lines dropped
 *     waitForMarker(text | RegExp, { timeoutMs?, from? }): Promise<string>
 *                                   the first console line (from line index `from`, default 0)
 *                                   containing text; rejects if the guest ends first
 *     wait(): Promise<GuestResult>  QEMU's end: { status, exits, boots, exitCode (run-guest.sh's:
 *                                   the guest status, 124 timeout, 125 failure), timedOut,
 *                                   console, stderr }
 *     qmp(command, args?)           QMP over the unix socket (qmp_capabilities done on connect);
 *                                   resolves with "return", rejects with the QMP error
 *     qmpEvents                     QMP events received so far
 *     hotplugMemory(sizeBytes)      object-add memory-backend-(memfd|file, like the boot memory)
 *                                   share=on + device_add pc-dimm; resolves with the dimm id
 *     reset()                       QMP system_reset (the guest boots again: next boot number)
 *     stop()                        QMP quit (or SIGTERM), then wait()
 *     kill()                        SIGKILL of QEMU and run-guest.sh; wait()
 *   runGuest(options): Promise<GuestResult>   bootGuest + wait
 *   startVirtiofsd({ source, socket, xattr?, args? }): Promise<Virtiofsd>
 *       The reference C virtiofsd (/usr/lib/qemu/virtiofsd, from qemu-system-common) on socket,
 *       resolved once the socket exists; stop() ends it (it also exits when QEMU disconnects).
 *
 * Every QEMU and virtiofsd started here is killed when the test process exits; run-guest.sh also
 * stops QEMU when its caller dies or the timeout passes.
 *
 * Example:
 *   const vfsd = await startVirtiofsd({ source: dir, socket: join(tmp, 'vfs.sock') });
 *   const guest = await bootGuest({ devices: [{ socket: vfsd.socket, tag: 'share' }],
 *                                   script: 'sha256sum /mnt/share/*', timeoutMs: 120_000 });
 *   const r = await guest.wait();   // r.status === 0; guest.output() holds the sums
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { type Socket, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from './env.js';

export const GUEST_SCRIPTS = join(REPO, 'scripts', 'guest');
export const REFERENCE_VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

export interface GuestImage {
  kernel: string;
  kver: string;
  initramfs: string;
  modules: string[];
  builtin: string[];
  xattrsHelper: string | undefined;
}

export interface GuestDevice {
  socket: string;
  tag: string;
  queueSize?: number;
  requestQueues?: number;
}

export interface BootOptions {
  devices: GuestDevice[];
  script?: string;
  files?: Record<string, string>;
  memory?: string;
  memBackend?: 'memfd' | 'file';
  memPath?: string;
  smp?: number;
  qmp?: boolean;
  reboots?: number;
  hold?: boolean;
  noMount?: boolean;
  append?: string;
  qemuArgs?: string[];
  timeoutMs?: number;
  keepOnBackendLoss?: boolean;
  onConsoleLine?: (line: string) => void;
  logFile?: string;
}

export interface GuestResult {
  status: number | null;
  exits: number[];
  boots: number;
  exitCode: number | null;
  timedOut: boolean;
  console: string;
  stderr: string;
}

export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp?: unknown;
}

export interface Guest {
  readonly console: string;
  readonly lines: readonly string[];
  readonly stderr: string;
  readonly exits: readonly number[];
  readonly status: number | null;
  readonly boots: number;
  readonly qmpEvents: readonly QmpEvent[];
  output(boot?: number): string[];
  waitForMarker(text: string | RegExp, opts?: { timeoutMs?: number; from?: number }): Promise<string>;
  wait(): Promise<GuestResult>;
  qmp(command: string, args?: Record<string, unknown>): Promise<unknown>;
  hotplugMemory(sizeBytes: number): Promise<string>;
  reset(): Promise<void>;
  stop(): Promise<GuestResult>;
  kill(): Promise<GuestResult>;
}

export interface Virtiofsd {
  proc: ChildProcess;
  socket: string;
  stderr(): string;
  stop(): Promise<void>;
}

// Processes still running (value: whether it leads its own process group, as run-guest.sh with
// QEMU does) and their temp dirs, ended if the test process exits. SIGTERM, so that run-guest.sh
// still stops QEMU and removes its own temp dir after this process is gone.
const live = new Map<ChildProcess, boolean>();
const liveDirs = new Set<string>();
let exitHook = false;
function track(proc: ChildProcess, group: boolean): void {
  live.set(proc, group);
  proc.once('exit', () => live.delete(proc));
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const p of live.keys()) signal(p, 'SIGTERM');
      for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
    });
  }
}
function signal(proc: ChildProcess, sig: NodeJS.Signals): void {
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
  try {
    process.kill(live.get(proc) ? -proc.pid : proc.pid, sig);
  } catch {
    /* already gone */
  }
}

/** Why a test guest cannot boot on this machine, or undefined when it can. */
export function guestMissing(): string | undefined {
  const which = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
  if (!which('qemu-system-x86_64')) return 'qemu-system-x86_64 is absent (qemu-system-x86)';
  if (!which('cpio')) return 'cpio is absent';
  if (!existsSync('/bin/busybox') && !process.env.DAMSELFLY_GUEST_BUSYBOX) return '/bin/busybox is absent (busybox-static)';
  if (!process.env.DAMSELFLY_GUEST_KERNEL) {
    let kernels: string[] = [];
    try {
      kernels = readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-'));
    } catch {
      /* no /boot */
    }
    if (!kernels.some((k) => existsSync(`/lib/modules/${k.slice('vmlinuz-'.length)}/modules.dep`))) {
      return 'no /boot/vmlinuz-* with its modules (linux-image-amd64)';
    }
  }
  return undefined;
}

/** Runs a command to completion, collecting its output. */
function run(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let cachedImage: Promise<GuestImage> | undefined;

/** Builds (or finds in the cache) the guest initramfs; copies it to `out` when given. */
export function buildInitramfs(opts: { out?: string } = {}): Promise<GuestImage> {
  if (!opts.out && cachedImage) return cachedImage;
  const p = (async () => {
    const r = await run('bash', [join(GUEST_SCRIPTS, 'build-initramfs.sh'), ...(opts.out ? [opts.out] : [])]);
    if (r.code !== 0) throw new Error(`build-initramfs.sh exited ${r.code}\n${r.stderr}`);
    const kv = new Map<string, string>();
    for (const line of r.stdout.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) kv.set(line.slice(0, i), line.slice(i + 1));
    }
    const get = (k: string) => kv.get(k) ?? '';
    const initramfs = get('initramfs');
    return {
      kernel: get('kernel'),
      kver: get('kver'),
      initramfs,
      modules: get('modules').split(',').filter(Boolean),
      builtin: get('builtin').split(',').filter(Boolean),
      xattrsHelper: get('xattrs') === 'yes' ? join(initramfs, '..', 'xattrs') : undefined,
    };
  })();
  if (!opts.out) {
    cachedImage = p;
    p.catch(() => (cachedImage = undefined));
  }
  return p;
}

const KERNEL_LINE = /^\[\s*\d+\.\d+\] /;

/** Minimal QMP client: one connection, commands matched to replies by id, events collected. */
class Qmp {
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; command: string }>();
  readonly events: QmpEvent[] = [];

  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    const fail = (e: Error) => {
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('QMP connection closed')));
  }

  static async connect(path: string, deadline: number, alive: () => boolean): Promise<Qmp> {
    for (;;) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection({ path });
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const qmp = new Qmp(sock);
        await qmp.greeting();
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (e) {
        if (Date.now() > deadline || !alive()) throw new Error(`QMP socket ${path}: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private greetingWaiter: ((ok: boolean) => void) | undefined;
  private greeted = false;
  private greeting(): Promise<void> {
    if (this.greeted) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no QMP greeting')), 10_000);
      this.greetingWaiter = (ok) => {
        clearTimeout(timer);
        if (ok) resolve();
        else reject(new Error('QMP connection closed before the greeting'));
      };
      this.sock.once('close', () => this.greetingWaiter?.(false));
    });
  }

  private onData(d: string): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if ('QMP' in msg) {
        this.greeted = true;
        this.greetingWaiter?.(true);
      } else if ('event' in msg) {
        this.events.push(msg as unknown as QmpEvent);
      } else if (typeof msg.id === 'number' && this.pending.has(msg.id)) {
        const p = this.pending.get(msg.id)!;
        this.pending.delete(msg.id);
        if ('error' in msg) {
          const err = msg.error as { class?: string; desc?: string };
          p.reject(new Error(`QMP ${p.command}: ${err.class ?? 'Error'}: ${err.desc ?? line}`));
        } else {
          p.resolve(msg.return);
        }
      }
    }
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, command });
      this.sock.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

/** Boots a guest; see the file header. Returns as soon as QEMU is starting. */
export async function bootGuest(opts: BootOptions): Promise<Guest> {
  for (const d of opts.devices) {
    if (d.socket.includes(':') || d.tag.includes(':') || d.tag.includes(',')) throw new Error(`bootGuest: bad device ${d.socket} ${d.tag}`);
  }
  const image = await buildInitramfs();
  const dir = await mkdtemp(join(tmpdir(), 'damselfly-guest-'));
  liveDirs.add(dir);
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const memBackend = opts.memBackend ?? 'memfd';
  const memPath = opts.memPath ?? '/dev/shm';
  const args = [join(GUEST_SCRIPTS, 'run-guest.sh'), '--kernel', image.kernel, '--initramfs', image.initramfs];
  for (const d of opts.devices) {
    args.push('--fs', [d.socket, d.tag, d.queueSize ?? '', d.requestQueues ?? ''].join(':').replace(/:+$/, ''));
  }
  if (opts.script !== undefined) {
    const script = join(dir, 'check.sh');
    await writeFile(script, opts.script, { mode: 0o755 });
    args.push('--script', script);
  }
  for (const [guestPath, hostPath] of Object.entries(opts.files ?? {})) args.push('--add', `${hostPath}:${guestPath}`);
  args.push('--memory', opts.memory ?? '1G', '--mem-backend', memBackend, '--mem-path', memPath);
  args.push('--timeout', String(Math.ceil(timeoutMs / 1000)));
  if (opts.smp) args.push('--smp', String(opts.smp));
  const qmpPath = opts.qmp ? join(dir, 'qmp.sock') : undefined;
  if (qmpPath) args.push('--qmp', qmpPath);
  if (opts.reboots) args.push('--reboot', String(opts.reboots));
  if (opts.hold) args.push('--hold');
  if (opts.noMount) args.push('--no-mount');
  if (opts.keepOnBackendLoss) args.push('--keep-on-backend-loss');
  if (opts.append) args.push('--append', opts.append);
  if (opts.logFile) args.push('--log', opts.logFile);
  for (const a of opts.qemuArgs ?? []) args.push('--qemu-arg', a);

  const proc = spawn('bash', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  track(proc, true);

  let consoleText = '';
  let partial = '';
  let stderr = '';
  const lines: string[] = [];
  const exits: number[] = [];
  let boots = 0;
  let ended = false;
  const lineWaiters = new Set<() => void>();
  const onLine = (raw: string): void => {
    const line = raw.replace(/\r/g, '');
    lines.push(line);
    const exit = /DAMSELFLY-GUEST-EXIT (\d+)/.exec(line);
    if (exit) exits.push(Number(exit[1]));
    if (/DAMSELFLY-GUEST-BOOT \d+/.test(line)) boots++;
    opts.onConsoleLine?.(line);
    for (const w of lineWaiters) w();
  };
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (d: string) => {
    consoleText += d;
    partial += d;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      onLine(partial.slice(0, nl));
      partial = partial.slice(nl + 1);
    }
  });
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));

  let timedOut = false;
  const hardTimer = setTimeout(() => {
    timedOut = true;
    signal(proc, 'SIGKILL');
  }, timeoutMs + 15_000);
  const statusOf = () => (exits.length === 0 ? null : (exits.find((s) => s !== 0) ?? 0));
  const done: Promise<GuestResult> = new Promise((resolve) => {
    proc.on('close', (code) => {
      clearTimeout(hardTimer);
      if (partial) onLine(partial);
      partial = '';
      ended = true;
      for (const w of lineWaiters) w();
      qmpClient?.close();
      liveDirs.delete(dir);
      void rm(dir, { recursive: true, force: true });
      resolve({ status: statusOf(), exits: [...exits], boots, exitCode: code, timedOut: timedOut || code === 124, console: consoleText, stderr });
    });
  });

  let qmpClient: Qmp | undefined;
  let qmpConnecting: Promise<Qmp> | undefined;
  const qmp = async (command: string, args?: Record<string, unknown>): Promise<unknown> => {
    if (!qmpPath) throw new Error('bootGuest: qmp: true was not given');
    qmpConnecting ??= Qmp.connect(qmpPath, Date.now() + 30_000, () => !ended).then((c) => (qmpClient = c));
    const client = await qmpConnecting;
    return client.execute(command, args);
  };
  let dimms = 0;

  const guest: Guest = {
    get console() {
      return consoleText;
    },
    get lines() {
      return lines;
    },
    get stderr() {
      return stderr;
    },
    get exits() {
      return exits;
    },
    get status() {
      return statusOf();
    },
    get boots() {
      return boots;
    },
    get qmpEvents() {
      return qmpClient?.events ?? [];
    },
    output(boot?: number): string[] {
      // Split the console by boot (numbered by the guest's CMOS counter), then take the lines
      // between BEGIN and END.
      const perBoot = new Map<number, string[]>();
      let cur: string[] | undefined;
      for (const l of lines) {
        const m = /DAMSELFLY-GUEST-BOOT (\d+)/.exec(l);
        if (m) perBoot.set(Number(m[1]), (cur = []));
        else cur?.push(l);
      }
      const started = [...perBoot.values()].filter((b) => b.some((l) => l.includes('DAMSELFLY-GUEST-BEGIN')));
      const chosen = boot === undefined ? started[started.length - 1] : perBoot.get(boot);
      if (!chosen) return [];
      const begin = chosen.findIndex((l) => l.includes('DAMSELFLY-GUEST-BEGIN'));
      if (begin < 0) return [];
      let end = chosen.findIndex((l, i) => i > begin && /DAMSELFLY-GUEST-END \d+/.test(l));
      if (end < 0) end = chosen.length;
      return chosen.slice(begin + 1, end).filter((l) => !KERNEL_LINE.test(l));
    },
    waitForMarker(text, wopts = {}) {
      let pos = wopts.from ?? 0;
      const match = (l: string) => (typeof text === 'string' ? l.includes(text) : text.test(l));
      return new Promise((resolve, reject) => {
        const ms = wopts.timeoutMs ?? timeoutMs;
        const timer = setTimeout(() => finish(new Error(`no console line matching ${String(text)} in ${ms} ms`)), ms);
        const finish = (err?: Error, line?: string) => {
          clearTimeout(timer);
          lineWaiters.delete(check);
          if (err) reject(err);
          else resolve(line!);
        };
        const check = () => {
          for (; pos < lines.length; pos++) {
            if (match(lines[pos]!)) return finish(undefined, lines[pos]);
          }
          if (ended) finish(new Error(`the guest ended without a console line matching ${String(text)}\n${consoleText.slice(-3000)}\n${stderr}`));
        };
        lineWaiters.add(check);
        check();
      });
    },
    wait: () => done,
    qmp,
    async hotplugMemory(sizeBytes: number): Promise<string> {
      const n = ++dimms;
      const backend: Record<string, unknown> =
        memBackend === 'memfd'
          ? { 'qom-type': 'memory-backend-memfd', id: `hpmem${n}`, size: sizeBytes, share: true }
          : { 'qom-type': 'memory-backend-file', id: `hpmem${n}`, size: sizeBytes, share: true, 'mem-path': memPath };
      await qmp('object-add', backend);
      await qmp('device_add', { driver: 'pc-dimm', id: `dimm${n}`, memdev: `hpmem${n}` });
      return `dimm${n}`;
    },
    async reset(): Promise<void> {
      await qmp('system_reset');
    },
    async stop(): Promise<GuestResult> {
      if (!ended) {
        if (qmpPath) {
          await qmp('quit').catch(() => signal(proc, 'SIGTERM'));
        } else {
          signal(proc, 'SIGTERM');
        }
        const t = setTimeout(() => signal(proc, 'SIGKILL'), 10_000);
        void done.then(() => clearTimeout(t));
      }
      return done;
    },
    async kill(): Promise<GuestResult> {
      signal(proc, 'SIGKILL');
      return done;
    },
  };
  return guest;
}

/** Boots a guest and waits for its end. */
export async function runGuest(opts: BootOptions): Promise<GuestResult & { output: string[] }> {
  const g = await bootGuest(opts);
  const r = await g.wait();
  return { ...r, output: g.output() };
}

/** Starts the reference C virtiofsd on `socket`, serving `source`; resolves once it listens. */
export async function startVirtiofsd(opts: { source: string; socket: string; xattr?: boolean; args?: string[]; timeoutMs?: number }): Promise<Virtiofsd> {
  const args = [`--socket-path=${opts.socket}`, '-o', `source=${opts.source}`];
  if (opts.xattr ?? true) args.push('-o', 'xattr');
  args.push(...(opts.args ?? []));
  const proc = spawn(REFERENCE_VIRTIOFSD, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  track(proc, false);
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => proc.once('close', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  while (!existsSync(opts.socket)) {
    if (gone) throw new Error(`virtiofsd exited before listening\n${stderr}`);
    if (Date.now() > deadline) {
      signal(proc, 'SIGKILL');
      throw new Error(`virtiofsd did not create ${opts.socket}\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc,
    socket: opts.socket,
    stderr: () => stderr,
    async stop() {
      signal(proc, 'SIGTERM');
      const t = setTimeout(() => signal(proc, 'SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}
