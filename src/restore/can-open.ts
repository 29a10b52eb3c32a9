import { noZstdError, streamCompressionOf, type ZstdSource } from '../compress/compression';
import type { Identities } from '../crypto/age';
import type { Manifest } from '../storage/manifest';
import type { Repository } from '../storage/repository';
import { checkKeys } from './archive';

/**
 * Checks, before a restore or a drill creates anything, that this machine can open backup `m`:
 * a zstd to decompress a `.zst` file (the program, or Node's), and keys that decrypt an
 * encrypted one. A zstd that is missing is a CONFIG error; a key that does not fit, NO_KEY.
 */
export async function checkCanOpen(repo: Repository, m: Manifest, keys: Identities | undefined, zstd: ZstdSource): Promise<void> {
  if (streamCompressionOf(m.file) === 'zstd' && !zstd) throw noZstdError(m.file);
  await checkKeys(repo, m, keys);
}
