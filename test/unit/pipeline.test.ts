import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { findZstd, type Compressor, type ZstdSource } from '../../src/compress/compression';
import { findAgeProgram, generateIdentity, readIdentities } from '../../src/crypto/age';
import { BackupError } from '../../src/errors';
import { findExecutable } from '../../src/pg/program';
import { decodePipe } from '../../src/pipeline/by-hand';
import { CODECS, type DecodeContext } from '../../src/pipeline/codecs';
import { chainFor, chainOf, streamCompressionOf, suffixOf } from '../../src/pipeline/names';
import { canDecode, openDecoded, unkeyed, unpack, type StoredObject } from '../../src/pipeline/read';
import { pack } from '../../src/pipeline/write';
import { dataFileName, restoreCommand } from '../../src/repository/manifest';
import { tempDir } from '../helpers/temp';

const PATH = process.env.PATH ?? '';
const zstdProgram = findZstd(undefined, { PATH }, false) as Exclude<ZstdSource, 'builtin' | undefined>;
const COMPRESSIONS = ['none', 'zstd', 'gzip'] as const;
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

function collector(): { stream: Writable; bytes(): Buffer } {
  const chunks: Buffer[] = [];
  return { stream: new Writable({ write: (c: Buffer, _e, cb) => (chunks.push(c), cb()) }), bytes: () => Buffer.concat(chunks) };
}

async function drain(stages: (NodeJS.ReadableStream | NodeJS.WritableStream)[]): Promise<Buffer> {
  const out = collector();
  await pipeline([...stages, out.stream] as never);
  return out.bytes();
}

describe('the codec list', () => {
  it('is ordered: compression before encryption, each codec with its own suffix', () => {
    expect(CODECS.map((c) => c.name)).toEqual(['zstd', 'gzip', 'age']);
    expect(CODECS.map((c) => c.suffix)).toEqual(['.zst', '.gz', '.age']);
    const roles = CODECS.map((c) => c.role);
    expect(roles.lastIndexOf('compression')).toBeLessThan(roles.indexOf('encryption'));
    expect(new Set(CODECS.map((c) => c.suffix)).size).toBe(CODECS.length);
    expect(CODECS.filter((c) => c.keyed).map((c) => c.name)).toEqual(['age']);
  });

  it('a chain is read back from the name it gives, for every combination and older names', () => {
    for (const compression of COMPRESSIONS) {
      for (const encrypted of [false, true]) {
        const chain = chainFor(compression, encrypted);
        expect(chain.map((c) => c.name)).toEqual([...(compression === 'none' ? [] : [compression]), ...(encrypted ? ['age'] : [])]);
        for (const base of ['db_20261201T020000Z.dump', 'db_20261201T020000Z.sql', 'db_20261201T020000Z.key2.sql']) {
          expect(chainOf(`${base}${suffixOf(chain)}`)).toEqual(chain);
          expect(streamCompressionOf(`${base}${suffixOf(chain)}`)).toBe(compression === 'none' ? undefined : compression);
        }
      }
    }
    // one codec of each role, in the list's order: what is not at the end of the name is not a codec
    expect(chainOf('x.sql.zst.gz').map((c) => c.name)).toEqual(['gzip']);
    expect(chainOf('x.age.zst').map((c) => c.name)).toEqual(['zstd']);
    expect(chainOf('x.roles.sql')).toEqual([]);
  });

  it('restore_command undoes every combination with the standard tools, outermost first', () => {
    const id = 'webserver_db_20261201T020000Z';
    const expected: Record<string, string> = {
      'custom none plain': `pg_restore -d NEWDB ${id}.dump`,
      'custom none age': `age -d -i IDENTITY_FILE ${id}.dump.age | pg_restore -d NEWDB`,
      'custom zstd plain': `zstd -dc ${id}.dump.zst | pg_restore -d NEWDB`,
      'custom zstd age': `age -d -i IDENTITY_FILE ${id}.dump.zst.age | zstd -dc | pg_restore -d NEWDB`,
      'custom gzip plain': `gunzip -c ${id}.dump.gz | pg_restore -d NEWDB`,
      'custom gzip age': `age -d -i IDENTITY_FILE ${id}.dump.gz.age | gunzip -c | pg_restore -d NEWDB`,
      'plain none plain': `psql -v ON_ERROR_STOP=1 -d NEWDB -f ${id}.sql`,
      'plain none age': `age -d -i IDENTITY_FILE ${id}.sql.age | psql -v ON_ERROR_STOP=1 -d NEWDB`,
      'plain zstd plain': `zstd -dc ${id}.sql.zst | psql -v ON_ERROR_STOP=1 -d NEWDB`,
      'plain zstd age': `age -d -i IDENTITY_FILE ${id}.sql.zst.age | zstd -dc | psql -v ON_ERROR_STOP=1 -d NEWDB`,
      'plain gzip plain': `gunzip -c ${id}.sql.gz | psql -v ON_ERROR_STOP=1 -d NEWDB`,
      'plain gzip age': `age -d -i IDENTITY_FILE ${id}.sql.gz.age | gunzip -c | psql -v ON_ERROR_STOP=1 -d NEWDB`,
    };
    for (const format of ['custom', 'plain'] as const) {
      for (const compression of COMPRESSIONS) {
        for (const encrypted of [false, true]) {
          const file = dataFileName(id, format, encrypted, compression);
          expect(restoreCommand(file, format)).toBe(`createdb NEWDB && ${expected[`${format} ${compression} ${encrypted ? 'age' : 'plain'}`]}`);
        }
      }
    }
    expect(decodePipe('x.sql.zst.age', "'./x y.sql.zst.age'", 'KEY')).toEqual(["age -d -i KEY './x y.sql.zst.age'", 'zstd -dc']);
  });
});

describe('the pipeline: write side and read side', () => {
  const data = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `row ${i % 977}\t${i}\n`).join(''));

  const compressor: Compressor = { method: 'zstd', level: 1, by: 'stream', zstd: zstdProgram };

  async function keys(): Promise<{ recipients: string[]; ids: Awaited<ReturnType<typeof readIdentities>>; file: string }> {
    const { secret, publicKey } = await generateIdentity();
    const file = path.join(tempDir(), 'key.txt');
    fs.writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    return { recipients: [publicKey], ids: await readIdentities(file), file };
  }

  function object(file: string, stored: Buffer, recorded: StoredObject['recorded']): StoredObject {
    return { file, where: `${file} on test`, open: () => Readable.from([stored]), recorded };
  }

  it('every chain round-trips: what is stored is what the standard tools open, its checksum and the keyed input recorded', async () => {
    const { recipients, ids, file: keyFile } = await keys();
    const age = findAgeProgram(undefined, { PATH });
    const dir = tempDir();
    for (const compression of COMPRESSIONS) {
      for (const encrypted of [false, true]) {
        const chain = chainFor(compression, encrypted);
        const out = collector();
        const packed = await pack(chain, { compressor, recipients, age }, out.stream);
        await pipeline(Readable.from([data]), packed.input);
        await packed.done;
        const stored = out.bytes();
        expect(packed.inputSize()).toBe(data.length);
        expect(packed.stored()).toEqual({ sha256: sha256(stored), size: stored.length });
        const file = `x.sql${suffixOf(chain)}`;
        // by hand, as restore_command does: the standard tools undo it (where they are installed)
        const pipe = decodePipe(file, file, keyFile);
        if (pipe.length > 0 && chain.every((c) => findExecutable(c.byHand.tool, { PATH }))) {
          fs.writeFileSync(path.join(dir, file), stored);
          expect(execFileSync('sh', ['-c', pipe.join(' | ')], { cwd: dir, maxBuffer: 64 * 1024 * 1024 }).equals(data), pipe.join(' | ')).toBe(true);
        }
        const ctx: DecodeContext = { zstd: zstdProgram, keys: ids, recipients, missingKey: () => new Error('no key') };
        const recorded = { sha256: packed.stored().sha256, size: stored.length, plainSha256: packed.plainSha256() };
        expect(packed.plainSha256() === undefined).toBe(!encrypted);
        const unpacked = unpack(object(file, stored, recorded), ctx);
        expect((await drain(await unpacked.stages())).equals(data), file).toBe(true);
        expect(unpacked.result()).toMatchObject({ checksum: { ok: true }, problem: undefined, plainSha256: packed.plainSha256() ?? sha256(stored) });
        expect((await drain([await openDecoded(object(file, stored, recorded), ctx)])).equals(data)).toBe(true);
        // the keyed codec alone undone: what encryption was given
        const keyedOnly = unpack(object(file, stored, recorded), ctx, { leave: unkeyed(file) });
        expect(sha256(await drain(await keyedOnly.stages()))).toBe(packed.plainSha256() ?? sha256(stored));
        // cut short, every codec fails the read: never a shorter stream
        if (chain.length > 0) {
          const cut = unpack(object(file, stored.subarray(0, stored.length - 20), recorded), ctx);
          await expect(cut.stages().then(drain), file).rejects.toBeInstanceOf(Error);
        }
      }
    }
  });

  it('a stored byte changed fails the checksum; a changed record of the keyed input is a problem; a missing program or key is said first', async () => {
    const { recipients, ids } = await keys();
    const out = collector();
    const packed = await pack(chainFor('zstd', true), { compressor, recipients }, out.stream);
    await pipeline(Readable.from([data]), packed.input);
    await packed.done;
    const stored = out.bytes();
    const recorded = { ...packed.stored(), plainSha256: packed.plainSha256() };
    const ctx: DecodeContext = { zstd: zstdProgram, keys: ids, recipients, missingKey: () => new BackupError('NO_KEY', 'no key') };

    const flipped = Buffer.from(stored);
    flipped[10]! ^= 1; // in age's header: the read stops, the checksum still says it
    const bad = unpack(object('x.sql.zst.age', flipped, recorded), ctx);
    await expect(bad.stages().then(drain)).rejects.toBeInstanceOf(Error);

    const lied = unpack(object('x.sql.zst.age', stored, { ...recorded, plainSha256: '0'.repeat(64) }), ctx);
    await drain(await lied.stages());
    expect(lied.result().checksum.ok).toBe(true);
    expect(lied.result().problem?.code).toBe('DAMAGED');

    const wrongSize = unpack(object('x.sql.zst.age', stored, { ...recorded, size: recorded.size + 1 }), ctx);
    await drain(await wrongSize.stages());
    expect(wrongSize.result().checksum.ok).toBe(false);

    await expect(canDecode(object('x.sql.zst.age', stored, recorded), { ...ctx, zstd: undefined })).rejects.toMatchObject({ code: 'CONFIG' });
    await expect(unpack(object('x.sql.zst.age', stored, recorded), { ...ctx, keys: undefined }).stages()).rejects.toMatchObject({ code: 'NO_KEY' });
    await expect(canDecode(object('x.sql.zst.age', stored, recorded), ctx)).resolves.toBeUndefined();
  });
});
