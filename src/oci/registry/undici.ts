/**
 * undici, loaded on first use, and only the parts Damselfly speaks with: the Agent and ProxyAgent
 * dispatchers and the request API. Most daemons never speak HTTP (a passthrough share for Kata, an
 * image on local or NAS blobs), and evaluating undici at start-up cost each of them ~0.1 s before
 * it listened. undici's index also evaluates fetch, WebSocket, EventSource, cookies, caches and
 * mocks, and its cookies make Node compile its own built-in copy of undici: for `mount --image`,
 * whose first request waits for this, that was ~50–100 ms of its start (half of undici's source).
 * The modules are undici's own (CommonJS; `default` is their `module.exports`), at the exact
 * version package.json pins; src/oci/registry/undici-parts.d.ts types them.
 */
import type * as Undici from 'undici';

export interface UndiciExports {
  Agent: typeof Undici.Agent;
  ProxyAgent: typeof Undici.ProxyAgent;
}

let loading: Promise<UndiciExports> | undefined;

export function loadUndici(): Promise<UndiciExports> {
  loading ??= Promise.all([
    import('undici/lib/dispatcher/agent.js'),
    import('undici/lib/dispatcher/proxy-agent.js'),
    import('undici/lib/dispatcher/dispatcher.js'),
    import('undici/lib/api/index.js'),
  ]).then(([agent, proxyAgent, dispatcher, api]) => {
    // What undici's index does: every dispatcher gets request(), stream(), pipeline(), ….
    Object.assign(dispatcher.default.prototype, api.default);
    return { Agent: agent.default, ProxyAgent: proxyAgent.default };
  });
  return loading;
}

/** A request's URL as the dispatcher API takes it. */
export function requestTarget(url: string | URL): { origin: string; path: string } {
  const u = typeof url === 'string' ? new URL(url) : url;
  return { origin: u.origin, path: `${u.pathname}${u.search}` };
}
