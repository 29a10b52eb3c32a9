import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { storageFor } from '../../src/app';
import type { S3TargetConfig } from '../../src/config/targets';
import { BackupError } from '../../src/errors';
import { LocalStorage } from '../../src/storage/local';
import { S3Storage } from '../../src/storage/s3';
import { createS3Api, type S3Api } from '../../src/storage/s3-api';
import type { Storage } from '../../src/storage/types';
import { startS3, type S3Server } from '../helpers/s3';
import { storageContract, type StorageFixture } from '../storage-contract';

const MiB = 1024 * 1024;
/** The smallest part S3 accepts, so ~12 MiB goes up in three parts. */
const PART = 5 * MiB;

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'bb-storage-'));
}

/** Closes the server, failing instead of hanging when a client left a connection busy. */
async function closeWithin(server: S3Server, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`s3rver did not close within ${ms} ms: a connection was left open`)), ms);
  });
  try {
    await Promise.race([server.close(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function s3Api(server: S3Server, credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }): S3Api {
  // the settings storageFor() uses
  return createS3Api({ endpoint: server.endpoint, region: 'us-east-1', ...credentials, forcePathStyle: true, maxAttempts: 5 });
}

function s3Storage(api: S3Api, server: S3Server, prefix: string, bucket = server.bucket): S3Storage {
  return new S3Storage(api, { name: 'offsite', bucket, prefix, endpointLabel: server.endpoint, partSize: PART, queueSize: 2 });
}

function target(server: S3Server, over: Partial<S3TargetConfig> = {}): S3TargetConfig {
  return {
    name: 'offsite',
    type: 's3',
    endpoint: server.endpoint,
    region: 'us-east-1',
    bucket: server.bucket,
    prefix: 'p/',
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    forcePathStyle: true,
    partSizeBytes: PART,
    retention: { days: 7, minCount: 7 },
    ...over,
  };
}

storageContract('local', () => {
  const root = tmpDir();
  // not created yet: the driver creates its directory on first write
  const dir = path.join(root, 'backups');
  return Promise.resolve({
    storage: new LocalStorage(dir),
    temporaries: async () => (fs.existsSync(dir) ? (await fs.promises.readdir(dir)).filter((n) => n.startsWith('.')) : []),
    cleanup: () => fs.promises.rm(root, { recursive: true, force: true }),
  });
});

for (const prefix of ['p/', '']) {
  storageContract(`s3 (s3rver, prefix "${prefix}")`, async () => {
    const server = await startS3();
    const api = s3Api(server);
    return {
      storage: s3Storage(api, server, prefix),
      // s3rver writes an object's file in place, so a GET during a PUT can see a mix; S3 replaces atomically.
      atomicForConcurrentReaders: false,
      // s3rver implements neither ListMultipartUploads nor AbortMultipartUpload (405), so an
      // unfinished upload's parts are not visible to the test: only the interface is checked.
      cleanup: async () => {
        try {
          await closeWithin(server, 5000);
        } finally {
          api.destroy();
          fs.rmSync(server.dir, { recursive: true, force: true });
        }
      },
    } satisfies StorageFixture;
  });
}

describe('S3 driver against s3rver', () => {
  const servers: S3Server[] = [];
  const apis: S3Api[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      await s.close().catch(() => undefined);
      fs.rmSync(s.dir, { recursive: true, force: true });
    }
    for (const a of apis.splice(0)) a.destroy();
  });
  async function server(): Promise<S3Server> {
    const s = await startS3();
    servers.push(s);
    return s;
  }
  function api(s: S3Server, credentials?: { accessKeyId: string; secretAccessKey: string }): S3Api {
    const a = s3Api(s, credentials);
    apis.push(a);
    return a;
  }

  it('lists only objects directly under its prefix', async () => {
    const s = await server();
    const raw = api(s);
    for (const Key of ['p/a.dump', 'p/sub/x', 'x', 'px', 'q/y']) {
      await raw.putObject({ Bucket: s.bucket, Key, Body: Buffer.from(Key), ContentMD5: crypto.createHash('md5').update(Key).digest('base64') });
    }
    expect(await s3Storage(raw, s, 'p/').list()).toEqual([{ name: 'a.dump', size: 8 }]);
    expect(await s3Storage(raw, s, '').list()).toEqual([
      { name: 'px', size: 2 },
      { name: 'x', size: 1 },
    ]);
    expect(await s3Storage(raw, s, 'q/').list()).toEqual([{ name: 'y', size: 3 }]);
  });

  it('sends a big object as parts of partSize, each with its Content-MD5, completed only on commit', async () => {
    const s = await server();
    const real = api(s);
    const sent: { size: number; md5ok: boolean }[] = [];
    // the real API, watched: every call still goes to s3rver
    const watched: S3Api = {
      ...real,
      uploadPart: (i) => {
        sent.push({ size: i.Body.length, md5ok: i.ContentMD5 === crypto.createHash('md5').update(i.Body).digest('base64') });
        return real.uploadPart(i);
      },
    };
    const storage = s3Storage(watched, s, 'p/');
    const data = crypto.randomBytes(12 * MiB + 5);
    const w = await storage.createWriter('big.dump');
    await pipeline(Readable.from([data.subarray(0, 3 * MiB), data.subarray(3 * MiB)]), w.stream);
    expect(sent.map((p) => p.size)).toEqual([PART, PART, 2 * MiB + 5]);
    expect(sent.every((p) => p.md5ok)).toBe(true);
    expect(await storage.list()).toEqual([]);
    await w.commit();
    expect(await storage.list()).toEqual([{ name: 'big.dump', size: data.length }]);
  });

  it('cleanupTemporary returns [] without throwing where the server cannot list uploads (s3rver: NotImplemented)', async () => {
    const s = await server();
    const storage = s3Storage(api(s), s, 'p/');
    const w = await storage.createWriter('db-20260101T020000Z.dump');
    w.stream.end(Buffer.from('left behind by a crash'));
    await new Promise((resolve) => w.stream.once('finish', resolve));
    expect(await storage.cleanupTemporary(() => true)).toEqual([]);
    expect(await storage.list()).toEqual([]);
  });

  /** Every operation of the storage, each expected to fail. */
  async function failures(storage: Storage): Promise<{ op: string; err: unknown; ms: number }[]> {
    const ops: [string, () => Promise<unknown>][] = [
      ['list', () => storage.list()],
      ['writeAtomic', () => storage.writeAtomic('m.manifest.json', '{}')],
      ['createWriter', () => storage.createWriter('d.dump')],
      ['readText', () => storage.readText('m.manifest.json')],
      [
        'openRead',
        async () => {
          for await (const _chunk of storage.openRead('d.dump')) void _chunk;
        },
      ],
      ['delete', () => storage.delete('d.dump')],
    ];
    const out: { op: string; err: unknown; ms: number }[] = [];
    for (const [op, run] of ops) {
      const started = Date.now();
      let err: unknown = 'no error';
      try {
        await run();
      } catch (e) {
        err = e;
      }
      out.push({ op, err, ms: Date.now() - started });
    }
    return out;
  }

  it('a wrong bucket name is a STORAGE error whose hint names the bucket, and no credential is shown', async () => {
    const s = await server();
    // A key pair only this test uses, registered with s3rver so that requests are authenticated
    // and fail on the bucket alone.
    const accessKeyId = 'AKIABBTESTKEY7Q2XZ9W';
    const secretAccessKey = 'bb-test-secret/never+shown=4f7a';
    const { DUMMY_ACCOUNT } = createRequire(__filename)('s3rver/lib/models/account') as {
      DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void; revokeAccessKey(id: string): void };
    };
    DUMMY_ACCOUNT.createKeyPair(accessKeyId, secretAccessKey);
    try {
      const storage = storageFor(target(s, { bucket: 'no-such-bucket', accessKeyId, secretAccessKey }));
      for (const { op, err } of await failures(storage)) {
        expect(err, op).toBeInstanceOf(BackupError);
        const e = err as BackupError;
        expect(e.code, op).toBe('STORAGE');
        expect(e.message, op).toMatch(/NoSuchBucket/);
        expect(e.hint, op).toContain('no-such-bucket');
        for (const text of [e.message, e.hint ?? '', e.detail ?? '', String(e)]) {
          expect(text, op).not.toContain(accessKeyId);
          expect(text, op).not.toContain(secretAccessKey);
        }
      }
    } finally {
      DUMMY_ACCOUNT.revokeAccessKey(accessKeyId);
    }
  });

  it('refused credentials are a STORAGE error that says so, and neither key is shown', async () => {
    const s = await server();
    const accessKeyId = 'AKIAUNKNOWNKEY000001';
    const secretAccessKey = 'unknown-secret-value-9c1d';
    const storage = storageFor(target(s, { accessKeyId, secretAccessKey }));
    for (const { op, err } of await failures(storage)) {
      expect(err, op).toBeInstanceOf(BackupError);
      const e = err as BackupError;
      expect(e.code, op).toBe('STORAGE');
      expect(e.hint, op).toMatch(/refused the credentials/);
      for (const text of [e.message, e.hint ?? '', String(e)]) {
        expect(text, op).not.toContain(accessKeyId);
        expect(text, op).not.toContain(secretAccessKey);
      }
    }
  });

  it('a stopped server makes every operation fail with a STORAGE error quickly, with the SDK retrying (maxAttempts 5)', async () => {
    const s = await server();
    const storage = storageFor(target(s));
    await storage.writeAtomic('m.manifest.json', '{}');
    await closeWithin(s, 5000);
    const started = Date.now();
    for (const { op, err, ms } of await failures(storage)) {
      expect(err, op).toBeInstanceOf(BackupError);
      const e = err as BackupError;
      expect(e.code, op).toBe('STORAGE');
      expect(e.message, op).toMatch(/offsite: .*ECONNREFUSED/);
      expect(e.hint, op).toMatch(/reachable/);
      // the SDK did retry, and its backoff stays short
      expect((e.cause as { $metadata?: { attempts?: number } }).$metadata?.attempts, op).toBe(5);
      expect(ms, op).toBeLessThan(10_000);
    }
    // cleanupTemporary cannot tell "not supported" from "not reachable": it returns [] either way
    expect(await storage.cleanupTemporary(() => true)).toEqual([]);
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it('a server that stops mid-upload fails the writer with a STORAGE error, and abort() returns', async () => {
    const s = await server();
    const a = api(s);
    const storage = s3Storage(a, s, 'p/');
    const w = await storage.createWriter('cut.dump');
    const data = crypto.randomBytes(11 * MiB);
    const stopped = (async function* () {
      yield data.subarray(0, 6 * MiB);
      await closeWithin(s, 5000);
      yield data.subarray(6 * MiB);
    })();
    const started = Date.now();
    const err = await pipeline(Readable.from(stopped), w.stream).then(
      () => 'no error',
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BackupError);
    expect((err as BackupError).code).toBe('STORAGE');
    expect((err as BackupError).message).toMatch(/uploading part \d+ of cut\.dump/);
    await w.abort();
    await w.abort();
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
