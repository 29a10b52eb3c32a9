import { Writable } from 'node:stream';
import type { App } from '../app';
import { chooseCompressor, storedCompression } from '../compress/compression';
import type { Codec, EncodeContext } from '../pipeline/codecs';
import { chainFor } from '../pipeline/names';
import { pack } from '../pipeline/write';

/** The codecs point-in-time recovery files go through here (BACKUP_COMPRESSION as a stream, then encryption when on), and what they are given. */
export function pitrChain(app: App): { chain: Codec[]; ctx: EncodeContext } {
  const compressor = chooseCompressor(app.config.compression, 'plain', app.zstd(), undefined);
  const chain = chainFor(storedCompression(compressor), app.config.encryption !== undefined);
  return { chain, ctx: { compressor, recipients: app.config.encryption?.recipients, age: app.ageProgram() } };
}

/** `data` through the write side of the pipeline, collected: what is stored, once, for every target. */
export async function encodeWhole(chain: readonly Codec[], ctx: EncodeContext, data: Buffer): Promise<Buffer> {
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
