/**
 * api — the nydusd-compatible HTTP control API on a unix socket (daemon info and state, mounts,
 * metrics, access patterns). Maps daemon errors to HTTP statuses, once.
 * May import: base, config, daemon.
 * Implements: ../shared/spec/virtio-fs-interop.md §2.2 (readiness, DaemonInfo, query encoding),
 * §2.4 (errors), §2.5 (the complete nydusd HTTP API).
 */
export { ApiServer, dispatch, type Answer } from './server.js';
export { ROUTES, parseMountBody, type ApiRequest, type ApiResult, type Route } from './routes.js';
export { errorAnswer, BadRequest, type ErrorAnswer, type Family } from './errors.js';
