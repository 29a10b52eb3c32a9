import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import {
  chooseCompressor,
  compressStage,
  decompressStage,
  describeCompression,
  findZstd,
  nodeHasZstd,
  pgDumpCompressArg,
  type Compressor,
  type ZstdSource,
} from '../../src/compress/compression';
import { parseCompression } from '../../src/config/sections/compression';
import { BackupError, ConfigError } from '../../src/errors';
import { streamCompressionOf } from '../../src/pipeline/names';
import { dataFileName, restoreCommand, rewrittenNames, type Manifest } from '../../src/repository/manifest';
import { discard } from '../../src/util/streams';

const PATH = process.env.PATH ?? '';
const zstdProgram = findZstd(undefined, { PATH }, false) as Exclude<ZstdSource, 'builtin' | undefined>;

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('no ConfigError');
}

/** Some megabytes of text that compresses about as a dump does: repeated words and random ids. */
function sample(mb: number): Buffer {
  const lines: string[] = [];
  for (let size = 0; size < mb * 1024 * 1024;) {
    const line = `${crypto.randomBytes(8).toString('hex')}\tcustomer ${lines.length % 977}\t{"plan": "basic", "active": true}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join(''));
}

async function collect(chain: (NodeJS.ReadableStream | NodeJS.WritableStream)[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline([
    ...chain,
    async (source: AsyncIterable<Buffer>) => {
      for await (const c of source) chunks.push(c);
    },
  ] as never);
  return Buffer.concat(chunks);
}

describe('BACKUP_COMPRESSION', () => {
  it('reads zstd, gzip, lz4 with or without a level, none, and a bare gzip level as before zstd', () => {
    expect(parseCompression('zstd')).toEqual({ method: 'zstd', level: undefined });
    expect(parseCompression('ZSTD:19')).toEqual({ method: 'zstd', level: 19 });
    expect(parseCompression('gzip:1')).toEqual({ method: 'gzip', level: 1 });
    expect(parseCompression('lz4')).toEqual({ method: 'lz4', level: undefined });
    expect(parseCompression('none')).toEqual({ method: 'none', level: undefined });
    expect(parseCompression('9')).toEqual({ method: 'gzip', level: 9 });
    expect(parseCompression('0')).toEqual({ method: 'none', level: undefined });
  });

  it('refuses anything else, naming the variable and the forms it takes', () => {
    for (const bad of ['10', 'zstd:0', 'zstd:20', 'gzip:10', 'brotli', 'zstd:fast', '']) {
      const e = configError(() => parseCompression(bad));
      expect(e.variable).toBe('BACKUP_COMPRESSION');
      expect(e.hint).toMatch(/zstd, zstd:LEVEL/);
    }
  });
});

describe('choosing the compressor', () => {
  const program: ZstdSource = { name: 'zstd', file: '/usr/bin/zstd', env: { PATH } };

  it('defaults to zstd in the stream, by the program or Node', () => {
    expect(chooseCompressor(undefined, 'custom', program, 15)).toEqual({ method: 'zstd', level: undefined, by: 'stream', zstd: program });
    expect(chooseCompressor(undefined, 'plain', 'builtin', 15)).toMatchObject({ method: 'zstd', by: 'stream', zstd: 'builtin' });
  });

  it('without zstd falls back to gzip (pg_dump’s own for custom) with a note that says how to install zstd', () => {
    const custom = chooseCompressor(undefined, 'custom', undefined, 15);
    expect(custom).toMatchObject({ method: 'gzip', by: 'pg_dump' });
    expect(custom.fallback).toMatch(/zstd is not available.*apt-get install zstd/);
    expect(pgDumpCompressArg(custom)).toBeUndefined(); // pg_dump's default: gzip level 6
    expect(chooseCompressor(undefined, 'plain', undefined, 15)).toMatchObject({ method: 'gzip', by: 'stream' });
  });

  it('refuses zstd asked for when there is none, and lz4 where pg_dump cannot write it', () => {
    expect(configError(() => chooseCompressor({ method: 'zstd', level: 3 }, 'custom', undefined, 15)).hint).toMatch(/apt-get install zstd/);
    expect(configError(() => chooseCompressor({ method: 'lz4', level: undefined }, 'custom', program, 15)).message).toMatch(
      /lz4 needs pg_dump 16 or later \(this one is 15\)/,
    );
    expect(configError(() => chooseCompressor({ method: 'lz4', level: undefined }, 'plain', program, 17)).message).toMatch(/only with BACKUP_FORMAT=custom/);
    expect(pgDumpCompressArg(chooseCompressor({ method: 'lz4', level: 4 }, 'custom', program, 17))).toBe('--compress=lz4:4');
  });

  it('tells pg_dump not to compress when the stream is compressed, and records what was used', () => {
    const zstd = chooseCompressor({ method: 'zstd', level: 5 }, 'custom', program, 15);
    expect(pgDumpCompressArg(zstd)).toBe('--compress=0');
    expect(describeCompression(zstd)).toBe('zstd:5');
    expect(describeCompression(chooseCompressor(undefined, 'custom', program, 15))).toBe('zstd:1');
    expect(describeCompression(chooseCompressor({ method: 'gzip', level: 9 }, 'custom', program, 15))).toBe('gzip:9');
    expect(pgDumpCompressArg(chooseCompressor({ method: 'gzip', level: 9 }, 'custom', program, 15))).toBe('--compress=9');
    expect(describeCompression(chooseCompressor({ method: 'none', level: undefined }, 'plain', program, 15))).toBe('none');
  });

  it('finds the zstd program on PATH, else Node’s zstd where it has one; a setting that is not a program is an error', () => {
    expect(zstdProgram?.file, 'the zstd program is installed (apt-get install zstd; .ci/run does)').toMatch(/\/zstd$/);
    expect(findZstd(undefined, { PATH: '/nonexistent' }, true)).toBe('builtin');
    expect(findZstd(undefined, { PATH: '/nonexistent' }, false)).toBeUndefined();
    expect(configError(() => findZstd('/nonexistent/zstd', { PATH }, true)).variable).toBe('BACKUP_ZSTD_PROGRAM');
    expect(configError(() => findZstd('builtin', { PATH }, false)).message).toMatch(/needs Node 22\.15/);
  });
});

describe('names and the standard command', () => {
  const id = 'webserver_db_20261201T020000Z';

  it('the name says what the file holds, and the compression is read back from it', () => {
    expect(dataFileName(id, 'custom', false, 'zstd')).toBe(`${id}.dump.zst`);
    expect(dataFileName(id, 'plain', true, 'zstd')).toBe(`${id}.sql.zst.age`);
    expect(dataFileName(id, 'plain', false, 'none')).toBe(`${id}.sql`);
    expect(dataFileName(id, 'plain')).toBe(`${id}.sql.gz`); // what a plain backup was before zstd
    expect(streamCompressionOf(`${id}.dump.zst.age`)).toBe('zstd');
    expect(streamCompressionOf(`${id}.sql.gz`)).toBe('gzip');
    expect(streamCompressionOf(`${id}.dump`)).toBeUndefined();
  });

  it('a rewritten backup keeps what its name says', () => {
    const m = { id, file: `${id}.dump.zst`, format: 'custom', roles_file: `${id}.roles.sql` } as Manifest;
    expect(rewrittenNames(m)).toEqual({ file: `${id}.key2.dump.zst.age`, roles: `${id}.key2.roles.sql.age` });
    expect(rewrittenNames({ ...m, file: `${id}.key2.sql.gz.age` }).file).toBe(`${id}.key3.sql.gz.age`);
  });

  it('the restore command uses only standard tools, in the order the file needs them', () => {
    expect(restoreCommand(`${id}.dump.zst`, 'custom')).toBe(`createdb NEWDB && zstd -dc ${id}.dump.zst | pg_restore -d NEWDB`);
    expect(restoreCommand(`${id}.dump`, 'custom')).toBe(`createdb NEWDB && pg_restore -d NEWDB ${id}.dump`);
    expect(restoreCommand(`${id}.sql.gz`, 'plain')).toBe(`createdb NEWDB && gunzip -c ${id}.sql.gz | psql -v ON_ERROR_STOP=1 -d NEWDB`);
    expect(restoreCommand(`${id}.sql`, 'plain')).toBe(`createdb NEWDB && psql -v ON_ERROR_STOP=1 -d NEWDB -f ${id}.sql`);
    expect(restoreCommand(`${id}.dump.zst.age`, 'custom')).toBe(
      `createdb NEWDB && age -d -i IDENTITY_FILE ${id}.dump.zst.age | zstd -dc | pg_restore -d NEWDB`,
    );
  });
});

describe('the compression stages', () => {
  const data = sample(4);
  const zstdProgramCompressor: Compressor = { method: 'zstd', level: 3, by: 'stream', zstd: zstdProgram };

  it('the zstd program compresses to what the zstd CLI reads back, and back again, byte for byte', async () => {
    const compressed = await collect([Readable.from([data]), compressStage(zstdProgramCompressor)!]);
    expect(compressed.length).toBeLessThan(data.length / 2);
    expect(execFileSync('zstd', ['-dc'], { input: compressed, maxBuffer: 64 * 1024 * 1024 }).equals(data)).toBe(true);
    expect((await collect([Readable.from([compressed]), decompressStage('zstd', zstdProgram, 'x.dump.zst')])).equals(data)).toBe(true);
  });

  it.runIf(nodeHasZstd())('Node’s zstd and the program read each other’s output', async () => {
    const builtin: Compressor = { ...zstdProgramCompressor, zstd: 'builtin' };
    const byNode = await collect([Readable.from([data]), compressStage(builtin)!]);
    expect(execFileSync('zstd', ['-dc'], { input: byNode, maxBuffer: 64 * 1024 * 1024 }).equals(data)).toBe(true);
    const byProgram = await collect([Readable.from([data]), compressStage(zstdProgramCompressor)!]);
    expect((await collect([Readable.from([byProgram]), decompressStage('zstd', 'builtin', 'x')])).equals(data)).toBe(true);
  });

  it('gzip in the stream is what gunzip reads', async () => {
    const gz = await collect([Readable.from([data]), compressStage({ method: 'gzip', level: 1, by: 'stream' })!]);
    expect(execFileSync('gunzip', ['-c'], { input: gz, maxBuffer: 64 * 1024 * 1024 }).equals(data)).toBe(true);
  });

  it('a zstd file cut short or damaged fails to decompress with DAMAGED, never as a shorter stream', async () => {
    const compressed = await collect([Readable.from([data]), compressStage(zstdProgramCompressor)!]);
    const cut = compressed.subarray(0, compressed.length - 100);
    const flipped = Buffer.from(compressed);
    flipped[Math.floor(flipped.length / 2)]! ^= 0x10;
    for (const bad of [cut, flipped]) {
      const err = await pipeline(Readable.from([bad]), decompressStage('zstd', zstdProgram, 'x.dump.zst'), discard()).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(BackupError);
      expect((err as BackupError).code).toBe('DAMAGED');
      expect((err as BackupError).message).toMatch(/^x\.dump\.zst cannot be decompressed/);
    }
  });

  it('a zstd file where no zstd is says how to install it', () => {
    const e = (() => {
      try {
        decompressStage('zstd', undefined, 'x.dump.zst');
      } catch (err) {
        return err as BackupError;
      }
      return undefined;
    })();
    expect(e?.message).toMatch(/x\.dump\.zst is compressed with zstd/);
    expect(e?.hint).toMatch(/apt-get install zstd/);
  });

  it('the zstd program that fails half-way fails the stage', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-zstd-'));
    const fake = path.join(dir, 'zstd');
    fs.writeFileSync(fake, '#!/bin/sh\nhead -c 1000\necho "zstd: out of memory" >&2\nexit 1\n', { mode: 0o755 });
    try {
      const stage = compressStage({ ...zstdProgramCompressor, zstd: { name: 'zstd', file: fake, env: { PATH } } })!;
      const err = await collect([Readable.from([data]), stage]).then(
        () => undefined,
        (e: unknown) => e as BackupError,
      );
      expect(err?.message).toMatch(/could not compress the backup: out of memory/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
