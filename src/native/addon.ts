/**
 * The one loader of the C++ addon (native/, built by cmake-js during `npm ci`) and its typed
 * interface. Nothing else in Damselfly calls `require` on the addon.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Codec numbers as in RAFS (spec §1.1). */
export type NativeCodec = 1 | 3;

export interface ZstdDecoder {
  /** Feeds compressed bytes; returns whatever output they completed. */
  decode(chunk: Uint8Array): Buffer;
  /** Throws when the stream stopped inside a frame. */
  finish(): void;
}

/** A uv_poll watcher: calls back with the ready events (1 readable, 2 writable) or a negative errno. */
export interface Poller {
  start(events: number): void;
  stop(): void;
  close(): void;
}

export interface NativeAddon {
  compress(codec: NativeCodec, src: Uint8Array, level?: number): Buffer;
  decompressInto(codec: NativeCodec, src: Uint8Array, dst: Uint8Array): number;
  compressAsync(codec: NativeCodec, src: Uint8Array, level?: number): Promise<Buffer>;
  decompressIntoAsync(codec: NativeCodec, src: Uint8Array, dst: Uint8Array): Promise<number>;
  ZstdDecoder: new () => ZstdDecoder;

  mknod(path: string | Buffer, mode: number, major: number, minor: number): void;
  lutimens(path: string | Buffer, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  llistxattr(path: string | Buffer): Buffer[];
  lgetxattr(path: string | Buffer, name: string | Buffer): Buffer | null;
  lsetxattr(path: string | Buffer, name: string | Buffer, value: Buffer): void;
  /** lseek with SEEK_DATA (3) or SEEK_HOLE (4); -1 when no data follows. */
  seekData(fd: number, offset: number, whence: 3 | 4): number;

  Poller: new (fd: number, callback: (events: number) => void) => Poller;
  mount(source: string, target: string | Buffer, fstype: string, flags: number, data: string): void;
  umount2(target: string | Buffer, flags: number): void;
  /** open(2) with O_CLOEXEC added. */
  openFd(path: string, flags: number): number;
}

const ADDON_PATH = fileURLToPath(new URL('../../build/native/Release/damselfly.node', import.meta.url));

function load(): NativeAddon {
  if (!existsSync(ADDON_PATH)) {
    throw new Error(
      `the native addon is not built (${ADDON_PATH} is missing): run scripts/setup.sh, or npm run build:native`,
    );
  }
  return createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
}

export const native: NativeAddon = load();
