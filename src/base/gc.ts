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

let collector: (() => void) | undefined;

/** Collects garbage now (a full, blocking collection: call it when nothing waits on the thread). */
export function collectGarbage(): void {
  if (collector === undefined) {
    setFlagsFromString('--expose-gc');
    collector = runInNewContext('gc') as () => void;
  }
  collector();
}
