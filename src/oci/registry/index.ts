/**
 * oci/registry — a client of the OCI distribution API (distribution-spec v1.1; Docker Registry
 * HTTP API v2): manifests by tag or digest, blob HEAD, ranged blob reads (the lazy-loading path),
 * whole-blob streams (layer pulls) and blob/manifest pushes; anonymous, Basic and Bearer-token
 * authentication (token authentication spec), manual redirects that never carry credentials to
 * another origin, bounded connection pools, timeouts and retries with capped backoff.
 * Conventions of Nydus artifacts on top of it: ../shared/spec/anchors.md §5.
 *
 * Timing: `timeoutMs` bounds each exchange from the moment it has a connection slot until its
 * response headers (connecting and upload progress included), then each gap between body chunks
 * (time a `blobStream` consumer holds a chunk does not count). Exchanges wait for a slot in a FIFO
 * queue of `maxConnections` per origin, never in undici's. Retries wrap whole operations.
 * May import: base, config (nothing else: storage backends and the converter build on it).
 *
 * ```ts
 * const c = new RegistryClient({ host: '127.0.0.1:5000', scheme: 'http', log, retryLimit: 3 });
 * const { bytes, mediaType, digest } = await c.getManifest('library/alpine', 'latest');
 * const head = await c.readBlob('library/alpine', blobDigest, 0, 4096);
 * await c.close();
 * ```
 */
export { MANIFEST_TYPES, RegistryClient, type Manifest, type RegistryClientOptions } from './client.js';
export { Transport, bodyDeadlineMs, parseContentRange, readRangeAnswer, statusError, type TransportOptions } from './http.js';
export { RegistryAuth, basicHeader, parseChallenges, parseTokenAnswer, scopeFor, type Challenge, type Credentials, type TokenAnswer, type TokenFetcher, type TokenRequest } from './auth.js';
export { askHelper, credentialFiles, credentialsForHost, helperAnswer, lookupSaved, savedCredentials, type SavedCredentials } from './docker-config.js';
export { HttpStatusError, describeErrorBody, isRetryableStatus, parseRetryAfter, redactUrl } from './errors.js';
export { backoffDelay, isRetryable, sleep, withRetry, type RetryPolicy } from './retry.js';
export { StreamDigest, checkDigest, checkReference, checkRepository, digestOf, isDigest, parseDigest, verifyDigest, type DigestAlgorithm } from './names.js';
