import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { storageFor } from '../../src/app';
import type { S3TargetConfig } from '../../src/config/types';
import { BackupError } from '../../src/errors';
import { LocalStorage } from '../../src/storage/local';
import { S3Storage } from '../../src/storage/s3';
import { createS3Api, type S3Api } from '../../src/storage/s3-api';
import type { Storage } from '../../src/storage/types';
import { sleep } from '../helpers/cli';
import { s3Backend, startBucket, startS3, testBucket, type S3Server, type TestBucket } from '../helpers/s3';
import { startTcpProxy } from '../helpers/tcp-proxy';
import { rejection, storageContract, type StorageFixture, namesAndSizes } from '../storage-contract';

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

function creds(b: TestBucket): { accessKeyId: string; secretAccessKey: string } {
  return { accessKeyId: b.accessKeyId, secretAccessKey: b.secretAccessKey };
}

/** The deadline storageFor() gives by default. */
const TIMEOUT_S = 30;

function s3Api(server: { endpoint: string }, credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, timeoutS = TIMEOUT_S): S3Api {
  // the settings storageFor() uses
  return createS3Api({ endpoint: server.endpoint, region: 'us-east-1', ...credentials, forcePathStyle: true, maxAttempts: 3, timeoutMs: timeoutS * 1000 });
}

function s3Storage(
  api: S3Api,
  server: { endpoint: string; bucket: string },
  prefix: string,
  over: { bucket?: string; partSize?: number; timeoutSeconds?: number; signal?: AbortSignal } = {},
): S3Storage {
  return new S3Storage(api, {
    name: 'offsite',
    bucket: over.bucket ?? server.bucket,
    prefix,
    endpointLabel: server.endpoint,
    partSize: over.partSize ?? PART,
    queueSize: 2,
    timeoutSeconds: over.timeoutSeconds ?? TIMEOUT_S,
    signal: over.signal,
  });
}

function target(server: { endpoint: string; bucket: string }, over: Partial<S3TargetConfig> = {}): S3TargetConfig {
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
    timeoutSeconds: TIMEOUT_S,
    retention: { days: 7, minCount: 7 },
    ...over,
  };
}

/** Files under `dir` this process holds open (its file descriptors, from /proc). */
function openFilesUnder(dir: string): string[] {
  const open: string[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(`${dir}/`)) open.push(target);
    } catch {
      // closed while looking
    }
  }
  return open;
}

storageContract('local', () => {
  const root = tmpDir();
  // not created yet: the driver creates its directory on first write
  const dir = path.join(root, 'backups');
  return Promise.resolve({
    storage: new LocalStorage(dir),
    knowsFreeSpace: true,
    hasEtags: false,
    temporaries: async () => (fs.existsSync(dir) ? (await fs.promises.readdir(dir)).filter((n) => n.startsWith('.')) : []),
    openHandles: () => Promise.resolve(openFilesUnder(dir)),
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
      knowsFreeSpace: false,
      hasEtags: true,
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

if (s3Backend().kind === 'radosgw') {
  for (const prefix of ['p/', '']) {
    storageContract(`s3 (radosgw, prefix "${prefix}")`, async () => {
      const bucket = await startBucket();
      const api = s3Api(bucket, creds(bucket));
      return {
        storage: s3Storage(api, bucket, prefix),
        knowsFreeSpace: false,
        hasEtags: true,
        // radosgw lists unfinished uploads: the test sees what a crash or abort leaves behind
        temporaries: async () => ((await bucket.uploads()) ?? []).map((u) => u.key).filter((k) => k.startsWith(prefix)),
        cleanup: async () => {
          api.destroy();
          await bucket.close();
        },
      } satisfies StorageFixture;
    });
  }
}

/** Every operation of the storage, each expected to fail (cleanupTemporary too, when asked: s3rver does not implement it). */
async function failures(storage: Storage, withCleanup = false): Promise<{ op: string; err: unknown; ms: number }[]> {
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
  if (withCleanup) ops.push(['cleanupTemporary', () => storage.cleanupTemporary(() => true)]);
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
    expect(namesAndSizes(await s3Storage(raw, s, 'p/').list())).toEqual([{ name: 'a.dump', size: 8 }]);
    expect(namesAndSizes(await s3Storage(raw, s, '').list())).toEqual([
      { name: 'px', size: 2 },
      { name: 'x', size: 1 },
    ]);
    expect(namesAndSizes(await s3Storage(raw, s, 'q/').list())).toEqual([{ name: 'y', size: 3 }]);
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
    expect(namesAndSizes(await storage.list())).toEqual([]);
    await w.commit();
    expect(namesAndSizes(await storage.list())).toEqual([{ name: 'big.dump', size: data.length }]);
  });

  it('cleanupTemporary returns [] without throwing where the server cannot list uploads (s3rver: NotImplemented)', async () => {
    const s = await server();
    const storage = s3Storage(api(s), s, 'p/');
    const w = await storage.createWriter('db-20260101T020000Z.dump');
    w.stream.end(Buffer.from('left behind by a crash'));
    await new Promise((resolve) => w.stream.once('finish', resolve));
    expect(await storage.cleanupTemporary(() => true)).toEqual([]);
    expect(namesAndSizes(await storage.list())).toEqual([]);
  });

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

  it('a stopped server makes every operation fail with a STORAGE error quickly, with the SDK retrying (3 attempts)', async () => {
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
      expect((e.cause as { $metadata?: { attempts?: number } }).$metadata?.attempts, op).toBe(3);
      expect(ms, op).toBeLessThan(10_000);
    }
    // unreachable is not "not supported": cleanupTemporary fails too, so the target is skipped
    const cleanup = await rejection(storage.cleanupTemporary(() => true));
    expect(cleanup).toBeInstanceOf(BackupError);
    expect((cleanup as BackupError).code).toBe('STORAGE');
    expect((cleanup as BackupError).message).toMatch(/offsite: listing the unfinished uploads under p\/ failed: .*ECONNREFUSED/);
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

function sha256(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

/** `data` in 1 MiB chunks. */
function* mibChunks(data: Buffer): Generator<Buffer> {
  for (let at = 0; at < data.length; at += MiB) yield data.subarray(at, at + MiB);
}

/** A proxy with no server behind it: accepts connections and never answers. Closed after the test. */
async function silentEndpoint(): Promise<{ endpoint: string; bucket: string }> {
  const p = await startTcpProxy(undefined);
  onTestFinished(() => p.close());
  return { endpoint: p.endpoint, bucket: 'backups' };
}

describe('S3 deadlines: a silent endpoint, a stalled upload, an idle download, cancelling', () => {
  const apis: S3Api[] = [];
  afterEach(() => {
    for (const a of apis.splice(0)) a.destroy();
  });
  function api(b: TestBucket, timeoutS: number): S3Api {
    const a = s3Api(b, creds(b), timeoutS);
    apis.push(a);
    return a;
  }

  it('against an endpoint that accepts connections and never answers, every operation fails in about the timeout with a STORAGE error naming the target and what to check', async () => {
    const silent = await silentEndpoint();
    const storage = storageFor(target(silent, { timeoutSeconds: 1 }));
    for (const { op, err, ms } of await failures(storage, true)) {
      expect(err, op).toBeInstanceOf(BackupError);
      const e = err as BackupError;
      expect(e.code, op).toBe('STORAGE');
      expect(e.message, op).toMatch(/^offsite: .+ failed: no answer from http:\/\/127\.0\.0\.1:\d+ within 1 s$/);
      expect(e.hint, op).toMatch(/accepted the connection but stopped answering: check that http:\/\/127\.0\.0\.1:\d+ is the provider's S3 API/);
      expect(e.hint, op).toMatch(/S3_TIMEOUT_SECONDS, or timeout_seconds in BACKUP_CONFIG_FILE; now 1 s/);
      // it did wait for an answer, and then gave up: one deadline for all attempts together
      expect(ms, op).toBeGreaterThanOrEqual(900);
      expect(ms, op).toBeLessThan(4000);
    }
  });

  it('an upload whose endpoint goes silent mid-way fails within its attempts’ deadlines; abort() returns at once; the leftover upload is removed by cleanupTemporary later', async () => {
    const b = await testBucket();
    const storage = s3Storage(api(b, 1), b, 'p/', { timeoutSeconds: 1 });
    const w = await storage.createWriter('db-20260101T020000Z.dump');
    // the server stores the first part; its answer and everything after it are swallowed
    const silenced = b.proxy.whenUploadAnswered(PART, () => b.proxy.silence());
    const started = Date.now();
    const err = await pipeline(Readable.from(mibChunks(crypto.randomBytes(16 * MiB))), w.stream).then(
      () => 'no error',
      (e: unknown) => e,
    );
    await silenced;
    expect(err).toBeInstanceOf(BackupError);
    expect((err as BackupError).code).toBe('STORAGE');
    expect((err as BackupError).message).toMatch(/^offsite: uploading part \d of db-20260101T020000Z\.dump failed: no answer from .* within 1 s$/);
    // 3 attempts of 1 s each, and short backoffs
    expect(Date.now() - started).toBeLessThan(10_000);
    const aborting = Date.now();
    await w.abort();
    // parts in flight are cancelled; the abort request itself gets 1 s and fails quietly
    expect(Date.now() - aborting).toBeLessThan(3000);

    await b.proxy.restore();
    expect(await b.keys()).toEqual([]);
    if (b.kind === 'radosgw') {
      // the server still holds the unfinished upload (it could not be told to drop it)
      expect((await b.uploads())!.map((u) => u.key)).toEqual(['p/db-20260101T020000Z.dump']);
      expect((await b.uploads())![0]!.parts).toBeGreaterThanOrEqual(1);
      expect(await storage.cleanupTemporary((n) => n.startsWith('other-'))).toEqual([]);
      expect(await storage.cleanupTemporary((n) => n.startsWith('db-'))).toEqual(['db-20260101T020000Z.dump']);
      expect(await b.uploads()).toEqual([]);
    }
  });

  it('a download that stops delivering data fails after the timeout; a reader that pauses for longer than the timeout is not cut off', async () => {
    const b = await testBucket();
    const storage = s3Storage(api(b, 1), b, 'p/', { timeoutSeconds: 1 });
    // bigger than what the socket buffers on both sides of the proxy hold
    const data = crypto.randomBytes(32 * MiB);
    await b.put('p/big.dump', data);

    const slow: Buffer[] = [];
    for await (const c of storage.openRead('big.dump')) {
      slow.push(c as Buffer);
      if (slow.length === 1) await sleep(3000);
    }
    expect(sha256(Buffer.concat(slow))).toBe(sha256(data));

    let got = 0;
    const started = Date.now();
    const err = await (async () => {
      for await (const c of storage.openRead('big.dump')) {
        if (got === 0) b.proxy.silence();
        got += (c as Buffer).length;
      }
      return 'no error';
    })().catch((e: unknown) => e);
    expect(got).toBeLessThan(data.length);
    expect(err).toBeInstanceOf(BackupError);
    expect((err as BackupError).code).toBe('STORAGE');
    expect((err as BackupError).message).toMatch(/^offsite: reading big\.dump failed: the download stopped: no data from .* for 1 s$/);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('the storage’s signal cancels requests in flight and a download at once, with an ABORTED error; nothing starts after it', async () => {
    const silent = await silentEndpoint();
    const ac = new AbortController();
    const storage = storageFor(target(silent, { timeoutSeconds: 30 }), ac.signal);
    const started = Date.now();
    const pending = [rejection(storage.list()), rejection(storage.createWriter('x.dump')), rejection(storage.cleanupTemporary(() => true))];
    setTimeout(() => ac.abort(), 300);
    for (const err of await Promise.all(pending)) {
      expect(err).toBeInstanceOf(BackupError);
      expect((err as BackupError).code).toBe('ABORTED');
      expect((err as BackupError).message).toMatch(/^offsite: .+ was cancelled$/);
    }
    expect(Date.now() - started).toBeLessThan(3000);
    expect(((await rejection(storage.readText('m.manifest.json'))) as BackupError).code).toBe('ABORTED');

    const b = await testBucket();
    await b.put('p/big.dump', crypto.randomBytes(32 * MiB));
    const ac2 = new AbortController();
    const live = s3Storage(api(b, 30), b, 'p/', { signal: ac2.signal });
    let got = 0;
    const err = await (async () => {
      for await (const c of live.openRead('big.dump')) {
        if (got === 0) {
          ac2.abort();
          await sleep(100);
        }
        got += (c as Buffer).length;
      }
      return 'no error';
    })().catch((e: unknown) => e);
    expect(got).toBeLessThan(32 * MiB);
    expect((err as BackupError).code).toBe('ABORTED');
  });

  it('requests carry Content-MD5 and none of the SDK’s extra checksums (WHEN_REQUIRED: S3-compatible providers reject them)', async () => {
    const b = await testBucket();
    const recorder = await startTcpProxy(Number(new URL(b.endpoint).port), { record: true });
    onTestFinished(() => recorder.close());
    const a = s3Api({ endpoint: recorder.endpoint }, creds(b), 30);
    apis.push(a);
    const storage = s3Storage(a, { endpoint: recorder.endpoint, bucket: b.bucket }, 'p/');
    await storage.writeAtomic('m.manifest.json', '{"a":1}');
    const w = await storage.createWriter('d.dump');
    await pipeline(Readable.from([Buffer.from('data')]), w.stream);
    await w.commit();
    expect(await storage.readText('d.dump')).toBe('data');
    const sent = recorder.sent();
    expect(sent.match(/^PUT .*\r\n/gm)?.length).toBe(2);
    expect(sent.match(/^content-md5: /gim)?.length).toBe(2);
    expect(sent).not.toMatch(/x-amz-checksum-|x-amz-sdk-checksum/i);
    expect(sent).toMatch(/^authorization: AWS4-HMAC-SHA256 /im);
  });
});

describe.runIf(s3Backend().kind === 'radosgw')('S3 driver against radosgw (strict like the providers)', () => {
  const apis: S3Api[] = [];
  afterEach(() => {
    for (const a of apis.splice(0)) a.destroy();
  });
  /** A bucket and a storage whose API is the real one with some calls replaced by `faults`. */
  async function setup(faults: (real: S3Api) => Partial<S3Api> = () => ({}), partSize = PART): Promise<{ b: TestBucket; real: S3Api; storage: S3Storage }> {
    const b = await testBucket();
    const real = s3Api(b, creds(b));
    apis.push(real);
    return { b, real, storage: s3Storage({ ...real, ...faults(real) }, b, 'p/', { partSize }) };
  }
  /** Nothing of `name` in the bucket: no object, no unfinished upload. */
  async function nothingLeft(b: TestBucket): Promise<void> {
    expect(await b.keys()).toEqual([]);
    expect(await b.uploads()).toEqual([]);
  }
  function flipped(body: Buffer): Buffer {
    const copy = Buffer.from(body);
    const at = copy.length >> 1;
    copy.writeUInt8(copy.readUInt8(at) ^ 0xff, at);
    return copy;
  }

  it('data damaged on the way (a body that does not match its Content-MD5) is refused (BadDigest): a clear STORAGE error, nothing kept', async () => {
    const { b, storage } = await setup((real) => ({
      uploadPart: (i, o) => real.uploadPart({ ...i, Body: flipped(i.Body) }, o),
      putObject: (i, o) => real.putObject({ ...i, Body: flipped(i.Body) }, o),
    }));
    const w = await storage.createWriter('damaged.dump');
    const err = await pipeline(Readable.from(mibChunks(crypto.randomBytes(6 * MiB))), w.stream).then(
      () => 'no error',
      (e: unknown) => e,
    );
    expect((err as BackupError).code).toBe('STORAGE');
    expect((err as BackupError).message).toMatch(/^offsite: uploading part \d of damaged\.dump failed: BadDigest \(HTTP 400\)/);
    expect((err as BackupError).hint).toMatch(/damaged on the way/);
    await w.abort();
    const put = await rejection(storage.writeAtomic('m.manifest.json', '{"id":"x"}'));
    expect((put as BackupError).code).toBe('STORAGE');
    expect((put as BackupError).message).toMatch(/^offsite: writing m\.manifest\.json failed: BadDigest \(HTTP 400\)/);
    await nothingLeft(b);
  });

  it('parts under 5 MiB are refused when the upload is completed (EntityTooSmall): a STORAGE error that says which setting to raise, the upload aborted', async () => {
    const { b, storage } = await setup(() => ({}), MiB);
    const w = await storage.createWriter('small-parts.dump');
    await pipeline(Readable.from(mibChunks(crypto.randomBytes(3 * MiB + 7))), w.stream);
    const err = await rejection(w.commit());
    expect((err as BackupError).code).toBe('STORAGE');
    expect((err as BackupError).message).toMatch(/^offsite: completing the upload of small-parts\.dump failed: EntityTooSmall \(HTTP 400\)/);
    expect((err as BackupError).hint).toMatch(/part size of at least 5 MB \(S3_PART_SIZE_MB, or part_size_mb/);
    await nothingLeft(b);
  });

  it('a part ETag the server does not know is refused when the upload is completed (InvalidPart): STORAGE error, the upload aborted', async () => {
    const { b, storage } = await setup((real) => ({
      uploadPart: async (i, o) => ({ ...(await real.uploadPart(i, o)), ETag: '"0123456789abcdef0123456789abcdef"' }),
    }));
    const w = await storage.createWriter('wrong-etag.dump');
    await pipeline(Readable.from(mibChunks(crypto.randomBytes(6 * MiB))), w.stream);
    const err = await rejection(w.commit());
    expect((err as BackupError).code).toBe('STORAGE');
    expect((err as BackupError).message).toMatch(/^offsite: completing the upload of wrong-etag\.dump failed: InvalidPart \(HTTP 400\)/);
    expect((err as BackupError).hint).toMatch(/does not hold the parts as they were sent/);
    await nothingLeft(b);
  });

  it('radosgw completes an upload with an empty ETag: the stored object’s ETag (HeadObject) is compared with the parts sent, and a mismatch removes it', async () => {
    const completionEtags: (string | undefined)[] = [];
    const { b, real, storage } = await setup((api) => ({
      // the server gets (and checks) other bytes of the same size than the ones the writer hashed
      uploadPart: (i, o) => {
        const other = flipped(i.Body);
        return api.uploadPart({ ...i, Body: other, ContentMD5: crypto.createHash('md5').update(other).digest('base64') }, o);
      },
      completeMultipartUpload: async (i, o) => {
        const r = await api.completeMultipartUpload(i, o);
        completionEtags.push(r.ETag);
        return r;
      },
    }));
    const w = await storage.createWriter('swapped.dump');
    await pipeline(Readable.from(mibChunks(crypto.randomBytes(11 * MiB))), w.stream);
    const err = await rejection(w.commit());
    expect(completionEtags.map((e) => e ?? '')).toEqual(['']);
    expect((err as BackupError).code).toBe('STORAGE');
    expect((err as BackupError).message).toMatch(/^offsite: swapped\.dump was stored with ETag [0-9a-f]{32}-3, expected [0-9a-f]{32}-3 for the parts sent$/);
    await nothingLeft(b);

    // and an upload that arrived whole passes the same check
    const good = crypto.randomBytes(11 * MiB);
    const ok = s3Storage(real, b, 'p/');
    const w2 = await ok.createWriter('good.dump');
    await pipeline(Readable.from(mibChunks(good)), w2.stream);
    await w2.commit();
    expect(sha256(await b.get('p/good.dump'))).toBe(sha256(good));
  });

  it('a wrong secret is refused (SignatureDoesNotMatch): every operation fails with a STORAGE error that says so, and the secret never shows', async () => {
    const b = await testBucket();
    const secretAccessKey = 'wrong-secret-Zq81/never+shown';
    const storage = storageFor(target(b, { accessKeyId: b.accessKeyId, secretAccessKey }));
    for (const { op, err } of await failures(storage, true)) {
      expect(err, op).toBeInstanceOf(BackupError);
      const e = err as BackupError;
      expect(e.code, op).toBe('STORAGE');
      expect(e.message, op).toMatch(/SignatureDoesNotMatch \(HTTP 403\)/);
      expect(e.hint, op).toMatch(/refused the credentials/);
      for (const text of [e.message, e.hint ?? '', String(e)]) {
        expect(text, op).not.toContain(secretAccessKey);
        expect(text, op).not.toContain(b.secretAccessKey);
      }
    }
    await nothingLeft(b);
  });
});
