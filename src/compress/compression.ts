/**
 * Compression of the dump (BACKUP_COMPRESSION). zstd by default: pg_dump writes its archive
 * uncompressed and the stream is compressed on its way to the targets, by the `zstd` program
 * (multi-threaded) when it is installed, else by Node's zlib where it has zstd (Node 22.15+).
 * gzip and lz4 are pg_dump's own (custom format), or, for a plain SQL dump, gzip in the stream.
 * The stages here are the compression codecs' entries in the pipeline (src/pipeline/codecs.ts),
 * which also says what a stored name's suffix means.
 */
import os from 'node:os';
import { PassThrough, type Duplex, type Readable, type Transform } from 'node:stream';
import zlib from 'node:zlib';
import type { BackupFormat, CompressionMethod, CompressionSetting } from '../config/types';
import { BackupError, ConfigError } from '../errors';
import { findExecutable, programPipeStage, programStage, type FilterProgram } from '../pg/program';

/** zstd's level when none is given: on this kind of data as small as level 3 and faster (issue 10's measurements). */
export const ZSTD_DEFAULT_LEVEL = 1;
/** gzip's level for a plain dump when none is given (pg_dump's own default for -Fc). */
export const GZIP_DEFAULT_LEVEL = 6;

/** Node's zlib has zstd (22.15 and later). */
export function nodeHasZstd(): boolean {
  return typeof (zlib as { createZstdCompress?: unknown }).createZstdCompress === 'function';
}

/**
 * Where zstd comes from: the program (BACKUP_ZSTD_PROGRAM, by default `zstd` from PATH), or
 * `builtin` (Node's zlib), or undefined when there is neither.
 */
export type ZstdSource = FilterProgram | 'builtin' | undefined;

export function findZstd(setting: string | undefined, env: NodeJS.ProcessEnv, builtin = nodeHasZstd()): ZstdSource {
  if (setting === 'builtin') {
    if (builtin) return 'builtin';
    throw new ConfigError(
      'BACKUP_ZSTD_PROGRAM',
      `builtin zstd needs Node 22.15 or later (this is ${process.version})`,
      'Install the zstd program (apt-get install zstd) and remove BACKUP_ZSTD_PROGRAM, or run a newer Node.',
    );
  }
  const file = findExecutable(setting ?? 'zstd', env);
  if (file) return { name: 'zstd', file, env: { PATH: env.PATH ?? '' } };
  if (setting !== undefined) {
    throw new ConfigError(
      'BACKUP_ZSTD_PROGRAM',
      `${setting} is not an executable program`,
      'Install zstd (apt-get install zstd), give its path, or set it to builtin.',
    );
  }
  return builtin ? 'builtin' : undefined;
}

export const ZSTD_INSTALL_HINT = 'Install zstd (apt-get install zstd) for backups about 3× faster and smaller.';

/** How one backup is compressed, decided from the setting, the format and the zstd at hand. */
export interface Compressor {
  method: CompressionMethod;
  level: number | undefined;
  /** Who compresses: pg_dump itself (gzip, lz4 or none), or a stage in the stream. */
  by: 'pg_dump' | 'stream';
  /** For zstd in the stream: the program, or Node's zlib. */
  zstd?: Exclude<ZstdSource, undefined>;
  /** zstd was the default but none is here: gzip is used instead, and this says how to get zstd. */
  fallback?: string;
}

/**
 * The compressor for a backup. Without a setting: zstd when there is one, else gzip with a
 * `fallback` note. zstd asked for explicitly and not available is a configuration error, as is
 * lz4 with a pg_dump before 16 or with the plain format.
 */
export function chooseCompressor(setting: CompressionSetting | undefined, format: BackupFormat, zstd: ZstdSource, pgDumpMajor: number | undefined): Compressor {
  if (setting === undefined) {
    if (zstd) return { method: 'zstd', level: undefined, by: 'stream', zstd };
    return {
      method: 'gzip',
      level: undefined,
      by: format === 'custom' ? 'pg_dump' : 'stream',
      fallback: `zstd is not available (no zstd program on PATH, and Node ${process.version} has no zstd): backups are compressed with gzip, about 3× slower. ${ZSTD_INSTALL_HINT}`,
    };
  }
  const { method, level } = setting;
  if (method === 'zstd') {
    if (!zstd) {
      throw new ConfigError(
        'BACKUP_COMPRESSION',
        `zstd is not available (no zstd program on PATH, and Node ${process.version} has no zstd)`,
        'Install zstd (apt-get install zstd), or set BACKUP_COMPRESSION=gzip.',
      );
    }
    return { method, level, by: 'stream', zstd };
  }
  if (method === 'lz4') {
    if (format !== 'custom') throw new ConfigError('BACKUP_COMPRESSION', 'lz4 works only with BACKUP_FORMAT=custom', 'Use zstd or gzip for plain dumps.');
    if (pgDumpMajor !== undefined && pgDumpMajor < 16) {
      throw new ConfigError(
        'BACKUP_COMPRESSION',
        `lz4 needs pg_dump 16 or later (this one is ${pgDumpMajor})`,
        'Use zstd (the default), or point PG_BIN_DIR at PostgreSQL 16+ client binaries.',
      );
    }
    return { method, level, by: 'pg_dump' };
  }
  if (method === 'none') return { method, level, by: 'pg_dump' };
  return { method, level, by: format === 'custom' ? 'pg_dump' : 'stream' };
}

/** pg_dump's --compress for this compressor (custom format), or undefined for its default. */
export function pgDumpCompressArg(c: Compressor): string | undefined {
  if (c.by === 'stream' || c.method === 'none') return '--compress=0';
  if (c.method === 'lz4') return `--compress=lz4${c.level !== undefined ? `:${c.level}` : ''}`;
  return c.level !== undefined ? `--compress=${c.level}` : undefined;
}

/** A compression in the stream, to undo: what a stored name's suffix says (src/pipeline/names.ts). */
export type StreamCompression = 'zstd' | 'gzip' | undefined;

/** What is applied to the stream, the pipeline's compression codec (its suffix in the file's name): none when pg_dump compresses (or nothing does). */
export function storedCompression(c: Compressor): 'zstd' | 'gzip' | 'none' {
  if (c.by !== 'stream') return 'none';
  return c.method === 'zstd' ? 'zstd' : 'gzip';
}

/** The manifest's `compression`: "zstd:1", "gzip:6", "gzip" (pg_dump's default level), "lz4", "none". */
export function describeCompression(c: Compressor): string {
  const level = c.level ?? (c.method === 'zstd' ? ZSTD_DEFAULT_LEVEL : c.method === 'gzip' && c.by === 'stream' ? GZIP_DEFAULT_LEVEL : undefined);
  return c.method === 'none' ? 'none' : `${c.method}${level !== undefined ? `:${level}` : ''}`;
}

/** Threads for the zstd program (and pg_basebackup's zstd): the cores, at most 4 (pg_dump and the server need the rest). */
export function zstdThreads(): number {
  return Math.max(1, Math.min(4, os.availableParallelism()));
}

/** The zstd program's arguments that compress to stdout at `level` (the default when undefined). */
export function zstdArgs(level: number | undefined): string[] {
  return ['-q', '-c', `-${level ?? ZSTD_DEFAULT_LEVEL}`, `-T${zstdThreads()}`];
}

/** The stage that compresses the stream, or undefined when pg_dump compresses (or nothing does). */
export function compressStage(c: Compressor): Duplex | undefined {
  if (c.by !== 'stream') return undefined;
  return c.method === 'gzip' ? gzipCompressStage(c) : zstdCompressStage(c);
}

/** gzip in the stream, at the compressor's level. */
export function gzipCompressStage(c: Pick<Compressor, 'level'>): Duplex {
  return zlib.createGzip({ level: c.level ?? GZIP_DEFAULT_LEVEL });
}

/** zstd in the stream, at the compressor's level, by the program (multi-threaded) or Node's zlib. */
export function zstdCompressStage(c: Pick<Compressor, 'level' | 'zstd'>): Duplex {
  const level = c.level ?? ZSTD_DEFAULT_LEVEL;
  if (c.zstd === 'builtin') {
    const z = zlib as unknown as { createZstdCompress(o: object): Transform; constants: Record<string, number> };
    return z.createZstdCompress({ params: { [z.constants.ZSTD_c_compressionLevel!]: level, [z.constants.ZSTD_c_checksumFlag!]: 1 } });
  }
  const program = c.zstd!;
  return programStage(
    program,
    zstdArgs(level),
    (tail) =>
      new BackupError('STORAGE', `${program.file} could not compress the backup: ${tail}`, {
        hint: 'Check the zstd program (BACKUP_ZSTD_PROGRAM), or set BACKUP_COMPRESSION=gzip, then run the backup again.',
      }),
  );
}

/**
 * With the zstd program: a stage that decompresses what is written to it into the open file
 * `outFd`, the program writing it itself, so the decompressed bytes never pass through this
 * process. Its readable side ends, empty, once the program has exited 0. A full disk is a
 * NO_SPACE error, anything else DAMAGED. Undefined without the program.
 */
export function decompressToFileStage(zstd: ZstdSource, outFd: number, file: string): Duplex | undefined {
  if (!zstd || zstd === 'builtin') return undefined;
  const out = 'the temporary copy';
  return programStage(
    zstd,
    ['-q', '-d', '-c'],
    (tail) =>
      /no space left/i.test(tail)
        ? new BackupError('NO_SPACE', `the disk filled up while ${file} was decompressed`, {
            hint: 'Free space in BACKUP_TEMP_DIR, or point it at a larger disk.',
          })
        : /write error|cannot (open|write)/i.test(tail)
          ? new BackupError('STORAGE', `${file} could not be decompressed into ${out}: ${tail}`, { hint: 'Check BACKUP_TEMP_DIR.' })
          : new BackupError('DAMAGED', `${file} cannot be decompressed: ${tail}`, {
              hint: 'The file was damaged after the backup (its checksum says whether the stored bytes changed). Use another backup.',
            }),
    outFd,
  );
}

/**
 * With the zstd program: a stage that decompresses what is written to it for another program
 * that reads zstd's output itself (`output`: give it at once as that program's `inputFrom`), as
 * `zstd -dc FILE | pg_restore` does, so the decompressed bytes never pass through this process.
 * Undefined without the program.
 */
export function decompressForProgram(zstd: ZstdSource, file: string): { stage: Duplex; output: Readable } | undefined {
  if (!zstd || zstd === 'builtin') return undefined;
  return programPipeStage(zstd, ['-q', '-d', '-c'], (tail) => undecodable(file, tail));
}

function undecodable(file: string, tail: string): BackupError {
  return new BackupError('DAMAGED', `${file} cannot be decompressed: ${tail}`, {
    hint: 'The file was damaged after the backup (its checksum says whether the stored bytes changed). Use another backup.',
  });
}

/**
 * The CONFIG error for `file`, compressed with zstd, where neither the zstd program nor Node's
 * zstd is here: raised before a restore or drill creates anything, and when the stream is opened.
 */
export function noZstdError(file: string): BackupError {
  return new BackupError('CONFIG', `${file} is compressed with zstd, and neither the zstd program nor a Node with zstd (22.15+) is here`, {
    hint: 'Install zstd (apt-get install zstd), then run it again.',
  });
}

/**
 * The stage that undoes a stored stream's compression, or a pass-through when there is none. A
 * zstd stream needs the zstd program or Node's zstd: without either, a NO_ZSTD configuration error
 * that says how to install it.
 */
export function decompressStage(kind: StreamCompression, zstd: ZstdSource, file: string): Duplex {
  if (kind === undefined) return new PassThrough({ highWaterMark: 1024 * 1024 });
  if (kind === 'gzip') return zlib.createGunzip();
  if (zstd === 'builtin') return (zlib as unknown as { createZstdDecompress(): Transform }).createZstdDecompress();
  if (!zstd) throw noZstdError(file);
  return programStage(zstd, ['-q', '-d', '-c'], (tail) => undecodable(file, tail));
}
