import type { Readable } from 'node:stream';
import type { ZstdSource } from '../compress/compression';
import type { AgeProgram, Identities } from '../crypto/age';
import type { DecodeContext } from '../pipeline/codecs';
import { checkStored, readStoredDigest, type ChecksumResult, type StoredDigest } from '../pipeline/checksum';
import { openDecoded, type StoredObject } from '../pipeline/read';
import type { Manifest } from '../repository/manifest';
import type { Repository } from '../repository/repository';
import { noKeyError } from './keys';

/** A backup's data object as the pipeline reads it back: from its repository, checked against its manifest. */
export function storedObject(repo: Repository, m: Manifest): StoredObject {
  return { file: m.file, where: `${m.file} on ${repo.name}`, open: () => repo.openData(m), recorded: { ...recordedOf(m), plainSha256: m.plain_sha256 } };
}

/** What the manifest recorded of the stored bytes. */
export function recordedOf(m: Manifest): StoredDigest {
  return { sha256: m.sha256, size: m.size_bytes };
}

/** What the pipeline's read stages need to open backup `m` here. */
export function decodeContext(o: { manifest: Manifest; zstd: ZstdSource; keys?: Identities | undefined; age?: AgeProgram | undefined }): DecodeContext {
  const m = o.manifest;
  return { zstd: o.zstd, keys: o.keys, age: o.age, recipients: m.encryption?.recipients ?? [], missingKey: () => noKeyError(m) };
}

/** What pg_dump wrote: the stored object decrypted and decompressed. */
export function openDump(o: {
  repo: Repository;
  manifest: Manifest;
  zstd: ZstdSource;
  keys?: Identities | undefined;
  age?: AgeProgram | undefined;
}): Promise<Readable> {
  return openDecoded(storedObject(o.repo, o.manifest), decodeContext(o));
}

/** The sha256 and size of the whole stored object, against its manifest. */
export async function storedChecksum(o: { repo: Repository; manifest: Manifest; signal?: AbortSignal | undefined }): Promise<ChecksumResult> {
  return checkStored(recordedOf(o.manifest), await readStoredDigest(o.repo.openData(o.manifest), o.signal));
}
