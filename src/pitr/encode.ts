import { Writable } from 'node:stream';
import type { App } from '../app';
import { readIdentities, type Identities } from '../crypto/age';
import { BackupError } from '../errors';
import { chooseCompressor, storedCompression } from '../compress/compression';
import type { Codec, DecodeContext, EncodeContext } from '../pipeline/codecs';
import { chainFor } from '../pipeline/names';
import { pack } from '../pipeline/write';
import { zstdCompressFiles } from '../compress/zstd-files';

/** The codecs point-in-time recovery files go through here (BACKUP_COMPRESSION as a stream, then encryption when on), and what they are given. */
export function pitrChain(app: App): { chain: Codec[]; ctx: EncodeContext } {
  const compressor = chooseCompressor(app.config.compression, 'plain', app.zstd(), undefined);
  const chain = chainFor(storedCompression(compressor), app.config.encryption !== undefined);
  return { chain, ctx: { compressor, recipients: app.config.encryption?.recipients, age: app.ageProgram() } };
}

/** `data` through the write side of the pipeline, collected: what is stored, once, for every target. */
export async function encodeWhole(chain: readonly Codec[], ctx: EncodeContext, data: Buffer): Promise<Buffer> {
  if (chain.length === 0) return data;
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      cb();
    },
  });
  const packed = await pack(chain, ctx, sink);
  packed.input.end(data);
  await packed.done;
  return Buffer.concat(parts);
}

/**
 * What the read side needs to open point-in-time recovery files here: the zstd, the age program,
 * and the identity (BACKUP_AGE_IDENTITY_FILE), read once, when an encrypted file needs it.
 */
export function pitrDecodeContext(app: App, what: string): () => Promise<DecodeContext> {
  let keys: Promise<Identities | undefined> | undefined;
  return () =>
    (keys ??= app.config.ageIdentityFile ? readIdentities(app.config.ageIdentityFile, app.askSecret) : Promise.resolve(undefined)).then((k) => ({
      zstd: app.zstd(),
      keys: k,
      age: app.ageProgram(),
      recipients: app.config.encryption?.recipients ?? [],
      missingKey: () =>
        new BackupError('NO_KEY', `${what} is encrypted and BACKUP_AGE_IDENTITY_FILE is not set`, {
          hint: 'Set BACKUP_AGE_IDENTITY_FILE to the identity file of a key it was encrypted to (mode 0600).',
        }),
    }));
}

/**
 * The chain's compression over several WAL files in one run of the zstd program, which reads and
 * writes the files itself (zstdCompressFiles): by file, what pushWal then takes as `compressed`.
 * Undefined when the chain does not compress with the zstd program (each file then goes through
 * the whole chain in pushWal). `dir`: a directory of ours for the program's outputs.
 */
export async function compressWalFiles(
  app: App,
  files: readonly string[],
  dir: string,
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<Map<string, Buffer> | undefined> {
  const { chain, ctx } = pitrChain(app);
  const c = ctx.compressor;
  if (chain[0]?.name !== 'zstd' || !c || typeof c.zstd !== 'object') return undefined;
  return zstdCompressFiles(c.zstd, c.level, files, dir, opts);
}
