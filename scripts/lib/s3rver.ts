/**
 * s3rver, the lenient S3 server of the tests and the demo, with one defect of its own fixed.
 *
 * s3rver 3.7's FilesystemStore.putObject answers before its file is written: for a body in memory
 * it resolves right after `writeStream.end()`, for a streamed one on the transform's 'finish'. A
 * GET that follows the PUT at once can then read an empty or short object (seen in CI: a manifest
 * read back as 0 bytes). Real stores are read-after-write consistent, so the tests must not see
 * this; the replacement below resolves only once the file is closed.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import S3rver from 's3rver';

interface StoredObject {
  bucket: string;
  key: string;
  content: Buffer | Readable;
  metadata: Record<string, string>;
}

interface Store {
  getResourcePath(bucket: string, key: string, kind: string): string;
  putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5: string): Promise<void>;
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const FilesystemStore = require('s3rver/lib/stores/filesystem') as {
  prototype: Store & { putObject(o: StoredObject): Promise<{ size: number; md5: string }> };
};

FilesystemStore.prototype.putObject = async function putObject(this: Store, object: StoredObject) {
  const file = this.getResourcePath(object.bucket, object.key, 'object');
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  const md5 = crypto.createHash('md5');
  let size = 0;
  const source = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
  await pipeline(
    source,
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        md5.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    }),
    fs.createWriteStream(file),
  );
  const digest = md5.digest('hex');
  await this.putMetadata(object.bucket, object.key, object.metadata, digest);
  return { size, md5: digest };
};

export { S3rver };
