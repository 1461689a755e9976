/**
 * The `registry` backend (spec §7.3, §8): blobs of one repository read with ranged GETs of the
 * OCI distribution API; the blob id is the sha256 digest. Proxies and mirrors are separate
 * `RegistryBackend`s composed by the factory with `FailoverBackend`.
 */
import { FormatError, NotFoundError } from '../../base/index.js';
import type { RegistryClient } from '../../oci/registry/index.js';
import type { BlobBackend, ReadOptions } from './types.js';

const BLOB_ID = /^[0-9a-f]{64}$/;

export class RegistryBackend implements BlobBackend {
  readonly kind = 'registry';

  constructor(
    private readonly client: RegistryClient,
    private readonly repo: string,
    private readonly ownsClient = true,
  ) {}

  private digest(id: string): string {
    if (!BLOB_ID.test(id)) throw new FormatError(`blob id ${JSON.stringify(id)} is not a sha256 digest; a registry cannot serve it`);
    return `sha256:${id}`;
  }

  async read(id: string, offset: number, length: number, opts?: ReadOptions): Promise<Buffer> {
    return this.client.readBlob(this.repo, this.digest(id), offset, length, opts);
  }

  async size(id: string, opts?: ReadOptions): Promise<number> {
    const n = await this.client.statBlob(this.repo, this.digest(id), opts?.signal);
    if (n === undefined) {
      throw new NotFoundError(`blob ${id} is not in ${this.repo}`);
    }
    return n;
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}
