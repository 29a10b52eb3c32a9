import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';

export interface S3Server {
  port: number;
  endpoint: string;
  bucket: string;
  dir: string;
  /** Environment for one S3 target pointing at this server (s3rver does not check signatures). */
  env(prefix?: string): Record<string, string>;
  close(): Promise<void>;
}

/** A real S3-API server (s3rver) on 127.0.0.1 with one bucket, storing under a temp directory. */
export async function startS3(opts: { port?: number; bucket?: string; dir?: string } = {}): Promise<S3Server> {
  const bucket = opts.bucket ?? 'backups';
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'bb-s3-'));
  const server = new S3rver({ port: opts.port ?? 0, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: bucket, configs: [] }] });
  const info = await server.run();
  const endpoint = `http://127.0.0.1:${info.port}`;
  return {
    port: info.port,
    endpoint,
    bucket,
    dir,
    env: (prefix = '') => ({
      S3_ENDPOINT: endpoint,
      S3_REGION: 'us-east-1',
      S3_BUCKET: bucket,
      S3_PREFIX: prefix,
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      S3_FORCE_PATH_STYLE: 'true',
    }),
    close: async () => {
      await server.close();
    },
  };
}
