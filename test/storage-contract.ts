import crypto from 'node:crypto';
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackupError } from '../src/errors';
import type { ObjectWriter, Storage, StoredObject } from '../src/storage/types';

/** A fresh, empty storage for one test, and how to dispose of it. */
export interface StorageFixture {
  storage: Storage;
  /** Must fail (not hang) when the driver left something open, e.g. an HTTP response nobody reads. */
  cleanup(): Promise<void>;
  /**
   * Names of the temporary objects beneath the interface (a local driver's temp files), when the
   * test can see them. Lets "leaves no trace" look past `list()`; without it only the interface is checked.
   */
  temporaries?(): Promise<string[]>;
  /**
   * False when the server behind the driver is known not to replace objects atomically for
   * concurrent readers (s3rver rewrites the file in place; S3 itself does not), so that check is skipped.
   */
  atomicForConcurrentReaders?: boolean;
  /** Can the driver tell the free space? Then freeBytes() must give a number, else undefined (never a guess such as 0). */
  knowsFreeSpace: boolean;
  /** Does stat() give ETags? Then every stat of a committed object has one. */
  hasEtags: boolean;
  /**
   * What the driver still holds open on its objects, when the test can see it beneath the
   * interface (a local driver's file descriptors); remote drivers are checked by `cleanup`.
   */
  openHandles?(): Promise<string[]>;
}

const MiB = 1024 * 1024;
/** Bigger than two 5 MiB parts, and not a multiple of any chunk size used here. */
const BIG = 12 * MiB + 12345;

function randomBytes(n: number): Buffer {
  return crypto.randomBytes(n);
}

function sha256(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

/** `data` in chunks of uneven sizes, so chunk and part boundaries do not line up. */
function* chunks(data: Buffer): Generator<Buffer> {
  const sizes = [64 * 1024 + 1, 1, 700 * 1024, 3 * MiB + 17];
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield data.subarray(at, at + n);
    at += n;
  }
}

function write(stream: NodeJS.WritableStream, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
}

async function end(stream: NodeJS.WritableStream): Promise<void> {
  stream.end();
  await finished(stream);
}

async function readAll(storage: Storage, name: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of storage.openRead(name)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** The error `p` rejects with; fails when it resolves. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

function expectStorageError(err: unknown): void {
  expect(err).toBeInstanceOf(BackupError);
  expect((err as BackupError).code).toBe('STORAGE');
}

async function listedNames(storage: Storage): Promise<string[]> {
  return (await storage.list()).map((o) => o.name);
}

/**
 * Registers the suite every Storage driver must pass: the guarantees documented on the
 * `Storage` and `ObjectWriter` interfaces (src/storage/types.ts), checked through the
 * interface only (plus `temporaries` when the fixture can show them).
 */
/** A listing without the times: what the assertions compare. */
export function namesAndSizes(objects: StoredObject[]): { name: string; size: number }[] {
  return objects.map(({ name, size }) => ({ name, size }));
}

export function storageContract(name: string, make: () => Promise<StorageFixture>): void {
  describe(`storage contract: ${name}`, () => {
    let fx: StorageFixture;
    let storage: Storage;
    const writers: ObjectWriter[] = [];

    beforeEach(async () => {
      fx = await make();
      storage = fx.storage;
    });
    afterEach(async () => {
      for (const w of writers.splice(0)) await w.abort();
      await fx.cleanup();
    });

    async function createWriter(objectName: string): Promise<ObjectWriter> {
      const w = await storage.createWriter(objectName);
      writers.push(w);
      return w;
    }

    async function expectAbsent(objectName: string): Promise<void> {
      expect(await listedNames(storage)).not.toContain(objectName);
      expectStorageError(await rejection(storage.readText(objectName)));
      expectStorageError(await rejection(readAll(storage, objectName)));
    }

    async function expectNoTemporaries(): Promise<void> {
      if (fx.temporaries) expect(await fx.temporaries()).toEqual([]);
    }

    /** Writes `data` through a writer and finishes the stream, without committing. */
    async function writeUncommitted(objectName: string, data: Buffer): Promise<ObjectWriter> {
      const w = await createWriter(objectName);
      await pipeline(Readable.from(chunks(data)), w.stream);
      return w;
    }

    async function writeObject(objectName: string, data: Buffer): Promise<void> {
      const w = await writeUncommitted(objectName, data);
      await w.commit();
    }

    it('starts empty', async () => {
      expect(namesAndSizes(await storage.list())).toEqual([]);
      expect(typeof storage.name).toBe('string');
      expect(storage.location).not.toBe('');
    });

    it.each([
      ['0 bytes', 0],
      ['a few bytes', 5],
      ['12 MiB (several S3 parts)', BIG],
    ])('an object written through createWriter (%s) is invisible until commit() resolves, then readable byte for byte', async (_label, size) => {
      const data = randomBytes(size);
      const objectName = `db-20260101T020000Z-${size}.dump`;
      const w = await createWriter(objectName);
      const half = Math.floor(size / 2);
      if (half > 0) {
        await write(w.stream, data.subarray(0, half));
        await expectAbsent(objectName);
      }
      await pipeline(Readable.from(chunks(data.subarray(half))), w.stream);
      await expectAbsent(objectName);

      await w.commit();
      expect(namesAndSizes(await storage.list())).toEqual([{ name: objectName, size }]);
      const back = await readAll(storage, objectName);
      expect(back.length).toBe(size);
      expect(sha256(back)).toBe(sha256(data));
      if (size < 1024) expect(await storage.readText(objectName)).toBe(data.toString('utf8'));
      await expectNoTemporaries();
    });

    describe('abort() leaves no trace and is safe twice', () => {
      it('before any write (right after createWriter, many times over, so a slow open cannot outlive the abort)', async () => {
        const loops = Array.from({ length: 4 }, async (_, l) => {
          for (let i = 0; i < 40; i++) {
            const w = await createWriter(`early-${l}-${i}.dump`);
            await w.abort();
            // nothing is still in flight on the writer (a local file still being opened would appear after the abort)
            expect(w.stream.closed).toBe(true);
            await w.abort();
          }
        });
        await Promise.all(loops);
        // nothing may appear after abort() resolved
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect(namesAndSizes(await storage.list())).toEqual([]);
        await expectAbsent('early-0-0.dump');
        await expectNoTemporaries();
      });

      it('mid-stream, after more than a part was written', async () => {
        const w = await createWriter('mid.dump');
        for (const c of chunks(randomBytes(6 * MiB))) await write(w.stream, c);
        await w.abort();
        await w.abort();
        await expectAbsent('mid.dump');
        await expectNoTemporaries();
      });

      it('after the stream ended, before commit', async () => {
        const w = await writeUncommitted('ended.dump', randomBytes(1000));
        await w.abort();
        await w.abort();
        await expectAbsent('ended.dump');
        await expectNoTemporaries();
      });

      it('after commit it does not remove the committed object', async () => {
        const data = randomBytes(777);
        const w = await writeUncommitted('kept.dump', data);
        await w.commit();
        await w.abort();
        await w.abort();
        expect(sha256(await readAll(storage, 'kept.dump'))).toBe(sha256(data));
        expect(namesAndSizes(await storage.list())).toEqual([{ name: 'kept.dump', size: 777 }]);
      });

      it('and the same name can be written afterwards', async () => {
        const w = await writeUncommitted('again.dump', randomBytes(100));
        await w.abort();
        const data = randomBytes(200);
        await writeObject('again.dump', data);
        expect(sha256(await readAll(storage, 'again.dump'))).toBe(sha256(data));
        await expectNoTemporaries();
      });
    });

    it('a writer whose source fails mid-way can be aborted and leaves nothing', async () => {
      const w = await createWriter('broken.dump');
      function* failing(): Generator<Buffer> {
        yield* chunks(randomBytes(6 * MiB));
        throw new Error('pg_dump died');
      }
      await expect(pipeline(Readable.from(failing()), w.stream)).rejects.toThrow('pg_dump died');
      await w.abort();
      await w.abort();
      await expectAbsent('broken.dump');
      expect(namesAndSizes(await storage.list())).toEqual([]);
      await expectNoTemporaries();
    });

    it('two objects can be written at once', async () => {
      const a = randomBytes(6 * MiB + 1);
      const b = randomBytes(5 * MiB + 2);
      const [wa, wb] = await Promise.all([createWriter('a.dump'), createWriter('b.dump')]);
      const ca = [...chunks(a)];
      const cb = [...chunks(b)];
      for (let i = 0; i < Math.max(ca.length, cb.length); i++) {
        const x = ca[i];
        const y = cb[i];
        await Promise.all([x && write(wa.stream, x), y && write(wb.stream, y)]);
      }
      await Promise.all([end(wa.stream), end(wb.stream)]);
      expect(namesAndSizes(await storage.list())).toEqual([]);
      await Promise.all([wb.commit(), wa.commit()]);
      expect(namesAndSizes(await storage.list())).toEqual([
        { name: 'a.dump', size: a.length },
        { name: 'b.dump', size: b.length },
      ]);
      expect(sha256(await readAll(storage, 'a.dump'))).toBe(sha256(a));
      expect(sha256(await readAll(storage, 'b.dump'))).toBe(sha256(b));
    });

    it('list(prefix) lists only the names that start with it, each with when it was stored', async () => {
      const before = Date.now() - 5 * 60_000; // the server's clock may differ a little from ours
      await storage.writeAtomic('000000010000000000000003-aa.zst', 'x');
      await storage.writeAtomic('000000010000000000000003.00000028.backup-bb', 'y');
      await storage.writeAtomic('000000010000000000000004-cc.zst', 'zz');
      expect(namesAndSizes(await storage.list('000000010000000000000003-'))).toEqual([{ name: '000000010000000000000003-aa.zst', size: 1 }]);
      expect((await storage.list('0000000100000000')).map((o) => o.name)).toHaveLength(3);
      expect(await storage.list('00000002')).toEqual([]);
      for (const o of await storage.list()) expect(o.modified!.getTime()).toBeGreaterThan(before);
    });

    it('writeAtomic creates and replaces an object whole', async () => {
      await storage.writeAtomic('m.manifest.json', 'a first version that is longer than the second');
      expect(await storage.readText('m.manifest.json')).toBe('a first version that is longer than the second');
      await storage.writeAtomic('m.manifest.json', 'v2');
      expect(await storage.readText('m.manifest.json')).toBe('v2');
      const bin = randomBytes(300);
      await storage.writeAtomic('m.manifest.json', bin);
      expect(sha256(await readAll(storage, 'm.manifest.json'))).toBe(sha256(bin));
      expect(namesAndSizes(await storage.list())).toEqual([{ name: 'm.manifest.json', size: 300 }]);
      // it also replaces an object that a writer created
      await writeObject('d.dump', randomBytes(1000));
      await storage.writeAtomic('d.dump', 'short');
      expect(await storage.readText('d.dump')).toBe('short');
      await expectNoTemporaries();
    });

    it('readers during writeAtomic see the old or the new content, never a mix', async (ctx) => {
      if (fx.atomicForConcurrentReaders === false) ctx.skip();
      const versions = [Buffer.alloc(2 * MiB, 'a'), Buffer.alloc(MiB, 'b')];
      const known = versions.map(sha256);
      await storage.writeAtomic('r.json', versions[0]!);
      const seen: string[] = [];
      const writers = (async () => {
        for (let i = 1; i <= 6; i++) await storage.writeAtomic('r.json', versions[i % 2]!);
      })();
      const readers = (async () => {
        for (let i = 0; i < 12; i++) seen.push(sha256(await readAll(storage, 'r.json')));
      })();
      await Promise.all([writers, readers]);
      for (const s of seen) expect(known).toContain(s);
      expect(sha256(await readAll(storage, 'r.json'))).toBe(known[0]);
    });

    it('readText and openRead of a missing object fail with a STORAGE BackupError naming it', async () => {
      const a = await rejection(storage.readText('missing.manifest.json'));
      expectStorageError(a);
      expect((a as BackupError).message).toContain('missing.manifest.json');
      const b = await rejection(readAll(storage, 'missing.dump'));
      expectStorageError(b);
      expect((b as BackupError).message).toContain('missing.dump');
      // and through a pipeline, as restore and sync read
      const c = await rejection(pipeline(storage.openRead('missing.dump'), fs.createWriteStream('/dev/null')));
      expectStorageError(c);
    });

    it('a reader that stops early releases the object', async () => {
      const data = randomBytes(BIG);
      await writeObject('big.dump', data);
      const r = storage.openRead('big.dump');
      await new Promise<void>((resolve, reject) => {
        r.once('data', () => resolve());
        r.once('error', reject);
      });
      r.destroy();
      if (fx.openHandles) {
        // the reader lets go of what it holds as it is destroyed, a moment later: wait for that
        let open = await fx.openHandles();
        for (const deadline = Date.now() + 10_000; open.length > 0 && Date.now() < deadline; open = await fx.openHandles())
          await new Promise((resolve) => setTimeout(resolve, 20));
        expect(open).toEqual([]);
      }
      expect(sha256(await readAll(storage, 'big.dump'))).toBe(sha256(data));
      await storage.delete('big.dump');
      expect(namesAndSizes(await storage.list())).toEqual([]);
      // (fx.cleanup fails if the early reader left a connection open)
    });

    it('list() gives names and sizes of committed objects only; delete() of a missing object is not an error', async () => {
      await writeObject('b.dump', Buffer.from('abc'));
      await writeObject('a.dump', Buffer.alloc(0));
      await storage.writeAtomic('c.manifest.json', '0123456789');
      const open = await createWriter('d.dump');
      await write(open.stream, Buffer.from('in progress'));
      await writeUncommitted('e.dump', Buffer.from('ended, not committed'));
      const sorted = namesAndSizes(await storage.list()).sort((x, y) => x.name.localeCompare(y.name));
      expect(sorted).toEqual([
        { name: 'a.dump', size: 0 },
        { name: 'b.dump', size: 3 },
        { name: 'c.manifest.json', size: 10 },
      ]);
      await storage.delete('b.dump');
      await expectAbsent('b.dump');
      await storage.delete('b.dump');
      await storage.delete('never-existed.dump');
      expect(await listedNames(storage)).toEqual(expect.arrayContaining(['a.dump', 'c.manifest.json']));
      expect(await storage.list()).toHaveLength(2);
    });

    it('cleanupTemporary(belongs) removes crash leftovers of matching names only', async () => {
      // A crash: data written and the stream ended, but neither commit() nor abort() ran.
      await writeUncommitted('db1-20260101T020000Z.dump', randomBytes(2000));
      await writeUncommitted('db2-20260101T020000Z.dump', randomBytes(2000));
      await writeObject('db1-20251231T020000Z.dump', Buffer.from('a good backup'));
      const asked: string[] = [];
      const removed = await storage.cleanupTemporary((n) => {
        asked.push(n);
        return n.startsWith('db1-');
      });
      // `belongs` is asked about final names, never temporary ones
      for (const n of asked) expect(['db1-20260101T020000Z.dump', 'db2-20260101T020000Z.dump']).toContain(n);
      for (const n of removed) expect(n).toContain('db1-20260101T020000Z.dump');
      if (fx.temporaries) {
        expect(removed).toHaveLength(1);
        const left = await fx.temporaries();
        expect(left).toHaveLength(1);
        expect(left[0]).toContain('db2-20260101T020000Z.dump');
        expect(await storage.cleanupTemporary((n) => n.startsWith('db1-'))).toEqual([]);
        expect(await storage.cleanupTemporary(() => true)).toHaveLength(1);
        await expectNoTemporaries();
      }
      // committed objects are never leftovers
      expect(namesAndSizes(await storage.list())).toEqual([{ name: 'db1-20251231T020000Z.dump', size: 13 }]);
      expect(await storage.readText('db1-20251231T020000Z.dump')).toBe('a good backup');
    });

    it('listTemporary(belongs) shows what cleanupTemporary looks at: uncommitted writes of matching names, never committed objects', async () => {
      await writeUncommitted('db1-20260101T020000Z.dump', randomBytes(2000));
      await writeUncommitted('db2-20260101T020000Z.dump', randomBytes(2000));
      await writeObject('db1-20251231T020000Z.dump', Buffer.from('a good backup'));
      const listed = await storage.listTemporary((n) => n.startsWith('db1-'));
      for (const t of listed) {
        expect(t.finalName).toBe('db1-20260101T020000Z.dump');
        expect(t.name).toContain('db1-20260101T020000Z.dump');
        // this process's own writer: the driver cannot call it another's
        expect(t.inUse).toBe(false);
      }
      if (fx.temporaries) {
        expect(listed).toHaveLength(1);
        const all = await storage.listTemporary(() => true);
        expect(all.map((t) => t.name).sort()).toEqual((await fx.temporaries()).sort());
        await storage.cleanupTemporary(() => true);
        expect(await storage.listTemporary(() => true)).toEqual([]);
      }
    });

    it('stat() gives the size (and an ETag that changes with the content, where the store has ETags) of committed objects only', async () => {
      const data = randomBytes(BIG);
      await writeObject('s.dump', data);
      const open = await createWriter('t.dump');
      await write(open.stream, Buffer.from('in progress'));
      const st = await storage.stat('s.dump');
      expect(st?.size).toBe(data.length);
      expect(await storage.stat('t.dump')).toBeUndefined();
      expect(await storage.stat('never-existed.dump')).toBeUndefined();
      expect(st?.etag !== undefined, 'an ETag').toBe(fx.hasEtags);
      if (st?.etag !== undefined) {
        await storage.delete('s.dump');
        const other = Buffer.from(data);
        other[1000] = other[1000]! ^ 1;
        await writeObject('s.dump', other);
        const again = await storage.stat('s.dump');
        expect(again?.size).toBe(data.length);
        expect(again?.etag).toBeDefined();
        expect(again?.etag).not.toBe(st.etag);
      }
    });

    it('freeBytes() is a positive number where the driver can tell, else undefined', async () => {
      const free = await storage.freeBytes();
      if (fx.knowsFreeSpace) {
        expect(Number.isSafeInteger(free)).toBe(true);
        expect(free).toBeGreaterThan(0);
      } else {
        expect(free).toBeUndefined();
      }
    });
  });
}
