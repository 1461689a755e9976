/** The SHA-256 of a file's contents, read in 1 MiB pieces (never the whole file in memory). */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** Lower-case hex. */
export async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}
