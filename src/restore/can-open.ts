import type { ZstdSource } from '../compress/compression';
import type { Identities } from '../crypto/age';
import { canDecode } from '../pipeline/read';
import type { Manifest } from '../repository/manifest';
import type { Repository } from '../repository/repository';
import { decodeContext, storedObject } from './read-back';

/**
 * Checks, before a restore or a drill creates anything, that this machine can open backup `m`:
 * every codec its name shows can be undone here (pipeline: a zstd to decompress a `.zst` file,
 * the program or Node's; keys that decrypt an encrypted one). A zstd that is missing is a CONFIG
 * error; a key that does not fit, NO_KEY.
 */
export async function checkCanOpen(repo: Repository, m: Manifest, keys: Identities | undefined, zstd: ZstdSource): Promise<void> {
  await canDecode(storedObject(repo, m), decodeContext({ manifest: m, zstd, keys }));
}
