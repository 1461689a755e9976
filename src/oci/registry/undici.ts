/**
 * undici, loaded on first use. Most daemons never speak HTTP (a passthrough share for Kata, an
 * image on local or NAS blobs), and evaluating undici at start-up cost each of them ~0.1 s (more
 * with a cold page cache) before it listened. undici is CommonJS: its exports are the dynamic
 * import's `default`, under Node and in the bundle alike (Node also lifts the names it finds to
 * the namespace; the bundle does not).
 */
import type * as Undici from 'undici';

type UndiciExports = Pick<typeof Undici, 'Agent' | 'ProxyAgent' | 'request'>;

let loading: Promise<UndiciExports> | undefined;

export function loadUndici(): Promise<UndiciExports> {
  loading ??= import('undici').then((ns) => ns.default as UndiciExports);
  return loading;
}
