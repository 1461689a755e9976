/**
 * A full garbage collection on demand, for a daemon going to rest. V8 collects when JavaScript
 * allocates, so what a busy spell left behind (decoded chunks and backend reads in ArrayBuffers
 * outside the heap: tens of MB after reading a few thousand files) stays resident for as long as
 * the daemon then idles, which for a container's image is most of its life.
 *
 * The collector is taken from a context of its own, made after `--expose-gc` is set; the main
 * context never gets a `gc` global.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from './log.js';

let collector: (() => void) | undefined;

/** Collects garbage now (a full, blocking collection: call it when nothing waits on the thread). */
export function collectGarbage(): void {
  if (collector === undefined) {
    setFlagsFromString('--expose-gc');
    collector = runInNewContext('gc') as () => void;
  }
  collector();
}

/** What a `collectGarbageSoon` request got: the collection's time, and whether an earlier request had asked for it. */
export interface Collection {
  ms: number;
  joined: boolean;
}

let pending: Promise<number> | undefined;

/**
 * One full collection `delayMs` after the first of the requests made until then, which all
 * share it. A daemon serving many images (nydusd mode: one device per blob of every mount) sees
 * them go to rest together, containers started together going idle together: one collection
 * then rather than one per device, each a full pass over the same heap (12-36 ms here).
 */
export function collectGarbageSoon(delayMs = 1000): Promise<Collection> {
  if (pending !== undefined) return pending.then((ms) => ({ ms, joined: true }));
  const mine = new Promise<number>((resolve) => {
    setTimeout(() => {
      pending = undefined;
      const start = performance.now();
      collectGarbage();
      resolve(performance.now() - start);
    }, delayMs).unref();
  });
  pending = mine;
  return mine.then((ms) => ({ ms, joined: false }));
}

/**
 * An `onRest` for a server whose filesystem keeps nothing to drop at rest (the passthrough
 * share): one collection (`collectGarbageSoon`), its time logged at debug level. For 3 rounds of
 * 2,000 files created, written, read and removed through the share, the daemon's anonymous memory
 * 15 s later: 13.8 MB with it (16.6 after the last round), 16.8 MB without (`scripts/bench/memory.ts`).
 */
export function collectAtRest(log: Logger): () => void {
  return () => {
    void collectGarbageSoon().then(({ ms, joined }) => {
      if (!joined) log.debug({ ms: Number(ms.toFixed(1)) }, 'at rest: garbage collected');
    });
  };
}
