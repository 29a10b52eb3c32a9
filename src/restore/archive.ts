import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline as pipelineStreams, type Duplex, type Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decompressForProgram, decompressStage, decompressToFileStage, streamCompressionOf, type ZstdSource } from '../compress/compression';
import type { DbConfig } from '../config/types';
import { checkKey, decrypt, readIdentities, type AgeProgram, type AskSecret, type Identities } from '../crypto/age';
import { BackupError } from '../errors';
import { log } from '../logger';
import type { PgBinaries } from '../pg/binaries';
import { diagnoseSessions, stopSessions } from '../pg/activity';
import { classifyLibpqStderr, libpqEnv } from '../pg/connection';
import { runProgram, type Program, type ProgramExit } from '../pg/program';
import { redact } from '../redact';
import type { Manifest } from '../storage/manifest';
import type { Repository } from '../storage/repository';
import { formatBytes } from '../util/format';
import { discard, hashTap } from '../util/streams';
import type { ArchiveSummary } from '../dump/archive-format';
import { offsetWrites, seekableOffsets } from '../dump/archive-offsets';
import { CustomArchiveReader } from '../dump/custom-archive';
import { readToc, tocEntries } from '../dump/toc';
import { privateTempDir, type TempCommand } from './temp-dirs';

export interface ChecksumResult {
  ok: boolean;
  sha256: string;
  sizeBytes: number;
}

function checksumOf(m: Manifest, r: { sha256: string; size: number }): ChecksumResult {
  return { ok: r.sha256 === m.sha256 && r.size === m.size_bytes, sha256: r.sha256, sizeBytes: r.size };
}

export function damaged(m: Manifest, r: ChecksumResult): BackupError {
  return new BackupError(
    'DAMAGED',
    `${m.file} does not match its manifest (sha256 ${r.sha256.slice(0, 16)}…, ${r.sizeBytes} bytes; recorded ${m.sha256.slice(0, 16)}…, ${m.size_bytes} bytes)`,
    { hint: 'The file was changed or damaged after the backup (bit rot, truncation, tampering). Use another backup and check the disk.' },
  );
}

export interface RestoreArchiveOptions {
  bins: PgBinaries;
  /** The keys that open an encrypted backup (see `keysFor`); undefined for a plaintext one. */
  keys?: Identities | undefined;
  /** The age program that decrypts the stream (BACKUP_AGE_PROGRAM); undefined: the library. */
  age?: AgeProgram | undefined;
  /** The zstd that decompresses a `.zst` backup (app.zstd()). */
  zstd: ZstdSource;
  db: DbConfig;
  target: string;
  repo: Repository;
  manifest: Manifest;
  /** Only these tables (schema.name), with their data. */
  tables?: string[];
  /** Leave out ownership and privileges (restore drills, other servers). */
  noOwner?: boolean;
  onProgress?: (done: number, total: number, item: string) => void;
  /**
   * Called (custom format) once every table's data is loaded and only indexes, constraints and the
   * like remain: the data can be read from then on. Not called when that cannot be told.
   */
  onDataLoaded?: () => void;
  signal?: AbortSignal;
  /** Stop pg_restore or psql when it shows no progress for this long (BACKUP_STALL_MINUTES). */
  stallMs?: number;
  /** pg_restore --jobs (custom format); see restoreArchive. Default 1. */
  jobs?: number;
  /** Where a decompressed copy for --jobs may go (BACKUP_TEMP_DIR), the free space to leave there (BACKUP_MIN_FREE_MB), and whose it is. */
  temp?: { dir: string; reserveBytes: number; command: TempCommand };
}

/**
 * The identity that opens backup `m` (BACKUP_AGE_IDENTITY_FILE), read and checked; undefined when
 * `m` is not encrypted. No identity configured for an encrypted backup is a NO_KEY error.
 */
export async function keysFor(identityFile: string | undefined, m: Manifest, ask?: AskSecret): Promise<Identities | undefined> {
  if (!m.encryption) return undefined;
  if (!identityFile) {
    throw new BackupError('NO_KEY', `backup ${m.id} is encrypted (to ${m.encryption.recipients.join(', ')}) and BACKUP_AGE_IDENTITY_FILE is not set`, {
      hint: 'Set BACKUP_AGE_IDENTITY_FILE to the identity file of one of those keys (mode 0600), or run this on the machine that holds it.',
    });
  }
  return readIdentities(identityFile, ask);
}

/** Checks, before anything is created, that the keys open backup `m` (a plaintext backup needs none). */
export async function checkKeys(repo: Repository, m: Manifest, keys: Identities | undefined): Promise<void> {
  if (m.encryption && keys) await checkKey(repo.openData(m), keys, `${m.file} on ${repo.name}`, m.encryption.recipients);
}

/**
 * The plaintext of the stored object, decrypted when the backup is encrypted; `storedTap`, when
 * given, sees the stored bytes first. A wrong key fails here, before any byte is delivered.
 */
async function openPlain(o: RestoreArchiveOptions, storedTap?: Transform): Promise<Readable> {
  const m = o.manifest;
  const stored = o.repo.openData(m);
  const source = storedTap ? pipelineStreams(stored, storedTap, () => undefined) : stored;
  if (!m.encryption) return source;
  const keys = o.keys ?? (await keysFor(undefined, m));
  if (!keys) throw new Error(`no keys for ${m.id}`); // keysFor has thrown already
  return decrypt(source, keys, `${m.file} on ${o.repo.name}`, m.encryption.recipients, o.age);
}

/** What pg_dump wrote: the stored object decrypted and decompressed. */
async function openDump(o: RestoreArchiveOptions): Promise<Readable> {
  const plain = await openPlain(o);
  const kind = streamCompressionOf(o.manifest.file);
  if (kind === undefined) return plain;
  let stage: Duplex;
  try {
    stage = decompressStage(kind, o.zstd, o.manifest.file);
  } catch (err) {
    plain.destroy();
    throw err;
  }
  return pipelineStreams(plain, stage, () => undefined);
}

/** The archive's table of contents (`pg_restore --list`), read from the start of the stored object. */
async function listArchive(o: RestoreArchiveOptions): Promise<string> {
  const toc = readToc(o.bins);
  // Only the start of the archive is needed: stop reading once pg_restore has the table of
  // contents. A read error ends pg_restore's input, so it cannot wait for more.
  const source = await openDump(o);
  let readError: unknown;
  source.once('error', (err) => {
    readError ??= err;
    toc.sink.end();
  });
  source.pipe(toc.sink);
  const { code, stdout, stderr } = await toc.result();
  source.unpipe(toc.sink);
  source.destroy();
  if (code !== 0 && readError) {
    throw readFailed(o.repo.name, o.manifest.file, readError);
  }
  if (code !== 0) {
    throw new BackupError('RESTORE_FAILED', `pg_restore --list cannot read ${o.manifest.file}: ${stderr.trim().split('\n')[0] ?? ''}`, {
      hint: 'Check the backup with `basement-backup verify`.',
    });
  }
  return stdout;
}

/**
 * A pg_restore --use-list file that selects exactly `tables` (schema.name) with their data, and
 * the schemas they are in (public exists in every new database). pg_restore's own --schema and
 * --table would restore every named table in every named schema, and not create the schemas.
 */
function tableList(toc: string, tables: string[]): string {
  const names = tables.map((t) => (t.includes('.') ? t : `public.${t}`)).map((t) => t.replace('.', ' '));
  const schemas = [...new Set(names.map((n) => n.slice(0, n.indexOf(' '))))].filter((s) => s !== 'public');
  const selected = tocEntries(toc)
    .filter(
      ({ entry }) =>
        schemas.some((s) => entry.startsWith(`SCHEMA - ${s} `)) || names.some((n) => entry.startsWith(`TABLE ${n} `) || entry.startsWith(`TABLE DATA ${n} `)),
    )
    .map(({ line }) => line);
  return selected.join('\n') + '\n';
}

export interface RestoreArchiveResult {
  checksum: ChecksumResult;
  /** The pg_restore jobs the restore ran with. */
  jobs: number;
  /** Why it ran with fewer jobs than asked for, when it did. */
  note?: string | undefined;
}

/**
 * Restores a stored dump into the existing, empty database `target`, stopping at the first
 * error. What becomes of `target` after an error is the caller's to do and to say. The object
 * streams from its storage (local or remote) through sha256, decryption and decompression into
 * pg_restore (custom) or psql (plain); a checksum that does not match the manifest fails the
 * restore even when the restore tool did not notice.
 *
 * With `jobs` above 1 (custom format), pg_restore --jobs needs a file it can seek in: a local
 * archive it reads itself, or else a decompressed copy written first to a private temporary
 * directory (BACKUP_TEMP_DIR) when its free space allows; the copy's checksums are checked before
 * pg_restore starts, and the directory is removed afterwards, on failure and when stopped too.
 * Without room, the restore streams single-job, with a `note`.
 */
export async function restoreArchive(o: RestoreArchiveOptions): Promise<RestoreArchiveResult> {
  const m = o.manifest;
  const tool = m.format === 'custom' ? 'pg_restore' : 'psql';
  const appName = `basement-backup ${tool} ${process.pid}`;
  const wanted = m.format === 'custom' ? Math.max(1, o.jobs ?? 1) : 1;
  // Single-job, a custom archive on local disk is read by pg_restore itself (as fast as a plain
  // pg_restore), while a second read of the same (cached) file checks its sha256; anything else
  // streams in. With jobs, even such a file is copied: pg_dump wrote it to a pipe, without the
  // data offsets the jobs need to seek (see decompressedCopy).
  const plainArchive = m.format === 'custom' && !m.encryption && streamCompressionOf(m.file) === undefined;
  const direct = plainArchive && wanted === 1 ? o.repo.localPath(m.file) : undefined;
  const scratch = privateTempDir(o.temp?.dir ?? os.tmpdir(), o.temp?.command ?? 'restore', m.database);
  try {
    const listFile = m.format === 'custom' && o.tables && o.tables.length > 0 ? await writeTableList(o, scratch) : undefined;
    let copy: { file: string; checksum: ChecksumResult } | undefined;
    let note: string | undefined;
    if (wanted > 1) {
      const made = await decompressedCopy(o, path.join(scratch, 'archive.dump'));
      if ('note' in made) note = made.note;
      else copy = made;
    }
    const file = direct ?? copy?.file;
    const jobs = file ? wanted : 1;
    const program = (inputFrom?: Readable): Program => {
      const started = runProgram({
        name: tool,
        file: o.bins.path(tool),
        args: m.format === 'custom' ? pgRestoreArgs(o, listFile, file, jobs) : psqlArgs(o),
        env: libpqEnv(o.db, o.bins.env, o.target, appName),
        input: inputFrom === undefined,
        inputFrom,
        signal: o.signal,
        ...(m.format === 'custom' ? pgRestoreOutput(o, file !== undefined, jobs) : {}),
        stall:
          o.stallMs === undefined
            ? undefined
            : {
                ms: o.stallMs,
                diagnose: () => diagnoseSessions(o.db, o.target, { appName }, tool),
                lockHint: (pid) =>
                  `End the blocking transaction (COMMIT or ROLLBACK it in its application${pid ? `, or SELECT pg_terminate_backend(${pid})` : ''}), then run it again.`,
              },
      });
      started.stdout.resume();
      return started;
    };
    let run: Program;
    let fed: { checksum: ChecksumResult; readError: unknown };
    if (copy) {
      run = program();
      run.stdin.end();
      fed = { checksum: copy.checksum, readError: undefined };
    } else {
      ({ run, fed } = await feed(o, program, direct));
    }
    const { checksum, readError } = fed;
    const exit = await run.exited;
    if (o.signal?.aborted) throw aborted();
    if (!readError && !checksum.ok) throw damaged(m, checksum);
    if (exit.stalled) {
      await stopSessions(o.db, o.target, appName);
      throw new BackupError('STALLED', exit.stalled.message, { hint: exit.stalled.hint, detail: run.tail.join('\n') || undefined });
    }
    if (readError) throw await readProblem(o, readError);
    if (exit.code !== 0) throw restoreFailed(o, run, exit);
    return { checksum, jobs, note };
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * restoreArchive, with `digest` run as soon as every table's data is loaded: beside pg_restore's
 * index and constraint builds, or after the restore when that moment cannot be told (psql,
 * `onDataLoaded` not called). `digest` must read each table in its own statement (autocommit):
 * a transaction holding its tables' locks could wait on a post-data build that waits on it. Not
 * run when the restore failed first; the restore's error wins over the digest's, which
 * `digested()` throws (so the caller may first record what the restore proved).
 */
export async function restoreAndDigest<T>(
  o: RestoreArchiveOptions,
  digest: () => Promise<T>,
): Promise<{ restored: RestoreArchiveResult; restoreMs: number; digested: () => T | undefined }> {
  const started = Date.now();
  let restoreMs = 0;
  let startDigest!: () => void;
  const dataLoaded = new Promise<void>((resolve) => (startDigest = resolve));
  let restoreFailed = false;
  const restoring = restoreArchive({
    ...o,
    onDataLoaded: () => {
      o.onDataLoaded?.();
      startDigest();
    },
  }).then(
    (r) => {
      restoreMs = Date.now() - started;
      startDigest();
      return r;
    },
    (err: unknown) => {
      restoreFailed = true;
      startDigest();
      throw err;
    },
  );
  const digesting = dataLoaded.then(() => (restoreFailed ? undefined : digest()));
  const [restored, digested] = await Promise.allSettled([restoring, digesting]);
  if (restored.status === 'rejected') throw restored.reason;
  return {
    restored: restored.value,
    restoreMs,
    digested: () => {
      if (digested.status === 'rejected') throw digested.reason;
      return digested.value;
    },
  };
}

function aborted(): BackupError {
  return new BackupError('ABORTED', 'the restore was stopped', { hint: 'Run it again.' });
}

/**
 * A failed read of the stored object: what it proves of the backup (DAMAGED), or a storage
 * problem. A stream that cannot be decrypted or decompressed stopped the read early: the stored
 * bytes are then read to the end, so that a changed file is named as such (its checksum).
 */
async function readProblem(o: RestoreArchiveOptions, readError: unknown): Promise<BackupError> {
  const undecodable = (readError as { code?: string }).code?.startsWith('Z_') || (readError instanceof BackupError && readError.code === 'DAMAGED');
  if (undecodable) {
    const whole = await storedChecksum(o).catch(() => undefined);
    if (whole && !whole.ok) return damaged(o.manifest, whole);
    if (readError instanceof BackupError) return readError;
    return new BackupError('DAMAGED', `${o.manifest.file} cannot be decompressed (${(readError as Error).message}), though its checksum matches`, {
      hint: 'It was written damaged. Use another backup.',
    });
  }
  if (readError instanceof BackupError && ['NO_KEY', 'KEY_FILE', 'CONFIG'].includes(readError.code)) return readError;
  return readFailed(o.repo.name, o.manifest.file, readError);
}

/** The sha256 and size of the whole stored object, against its manifest. */
async function storedChecksum(o: RestoreArchiveOptions): Promise<ChecksumResult> {
  const tap = hashTap();
  await pipeline(o.repo.openData(o.manifest), tap.stage, discard(), { signal: o.signal });
  return checksumOf(o.manifest, tap.result());
}

/** Writes the --use-list file that selects `o.tables` into the private directory `dir`, and returns its path. */
async function writeTableList(o: RestoreArchiveOptions, dir: string): Promise<string> {
  const toc = await listArchive(o);
  const file = path.join(dir, 'tables.list');
  fs.writeFileSync(file, tableList(toc, o.tables ?? []), { mode: 0o600 });
  return file;
}

/**
 * The archive pg_restore --jobs can read: the stored object decrypted and decompressed into
 * `file` (0600, in a 0700 directory), its checksums checked. Returns a note instead when the
 * temporary directory has no room for it (its size plus BACKUP_MIN_FREE_MB), or filled up meanwhile.
 */
async function decompressedCopy(o: RestoreArchiveOptions, file: string): Promise<{ file: string; checksum: ChecksumResult } | { note: string }> {
  const m = o.manifest;
  const dir = path.dirname(file);
  // pg_dump's output size; before it was recorded, an archive not compressed in the stream is about its stored size
  const needed = m.dump_size_bytes ?? (streamCompressionOf(m.file) === undefined ? m.size_bytes : undefined);
  const reserve = o.temp?.reserveBytes ?? 0;
  const free = await fs.promises.statfs(dir).then(
    (st) => st.bavail * st.bsize,
    () => undefined,
  );
  const single = (why: string) => {
    const note = `restored single-job: ${why} (pg_restore --jobs needs a file it can seek in; set BACKUP_TEMP_DIR to a disk with room)`;
    log.info(note); // the result carries it to the operator
    return { note };
  };
  if (needed === undefined) return single("the backup's decompressed size is not recorded");
  if (free !== undefined && free < needed + reserve) {
    return single(
      `${path.dirname(dir)} has ${formatBytes(free)} free, and a decompressed copy needs ${formatBytes(needed)} plus the ${formatBytes(reserve)} reserve`,
    );
  }
  // the zstd program writes the file itself; else it is written from here, decompressed (if at all) in the stream
  const compression = streamCompressionOf(m.file);
  const fd = fs.openSync(file, 'wx', 0o600);
  let toFile: Duplex | undefined;
  try {
    toFile = compression === 'zstd' ? decompressToFileStage(o.zstd, fd, m.file) : undefined;
  } finally {
    fs.closeSync(fd); // a started zstd has its own copy of it; else the file is written from here
  }
  const stored = storedStages(o, (n) => o.onProgress?.(n, m.size_bytes, 'bytes'), toFile !== undefined);
  let readError: unknown;
  try {
    const stages = await stored.stages();
    await pipeline([...stages, ...(toFile ? [toFile, discard()] : [fs.createWriteStream(file, { flags: 'w' })])], { signal: o.signal });
  } catch (err) {
    toFile?.destroy();
    readError = err;
  }
  if (o.signal?.aborted) throw aborted();
  const full = (readError as NodeJS.ErrnoException | undefined)?.code;
  if (full === 'ENOSPC' || full === 'NO_SPACE') {
    fs.rmSync(file, { force: true });
    return single(`${path.dirname(dir)} filled up while the decompressed copy was written`);
  }
  const { checksum, problem } = stored.result();
  if (readError) throw await readProblem(o, readError);
  if (!checksum.ok) throw damaged(m, checksum);
  if (problem) throw problem;
  await addOffsets(file, m);
  return { file, checksum };
}

/**
 * Writes into the copy the data offsets pg_dump leaves out when it writes to a pipe, so that
 * pg_restore's jobs seek straight to their tables' data (see seekableOffsets): those the manifest
 * recorded (data_offsets), each checked against the copy; else, or when one does not fit, the
 * archive is read once through one buffer to find them, data skipped by its chunk lengths.
 */
async function addOffsets(file: string, m: Manifest): Promise<void> {
  const fh = await fs.promises.open(file, 'r+');
  try {
    const recorded = m.data_offsets ? await offsetWrites(fh, (await fh.stat()).size, m.data_offsets) : undefined;
    if (!recorded && m.data_offsets) log.info('the data offsets the manifest records do not fit the archive: reading it to find them', { id: m.id });
    for (const { at, bytes } of recorded ?? (await readOffsets(fh, m))) await fh.write(bytes, 0, bytes.length, at);
  } finally {
    await fh.close();
  }
}

/** The data offsets of the archive open as `fh`, read from its start (seekableOffsets). */
async function readOffsets(fh: fs.promises.FileHandle, m: Manifest): Promise<{ at: number; bytes: Buffer }[]> {
  const archive = new CustomArchiveReader();
  const buf = Buffer.allocUnsafe(1024 * 1024);
  for (let pos = 0; ;) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) break;
    pos += bytesRead;
    archive.write(buf.subarray(0, bytesRead));
  }
  let summary: ArchiveSummary;
  try {
    summary = archive.end();
  } catch (err) {
    throw new BackupError('DAMAGED', `${m.file} does not hold a complete archive: ${(err as Error).message}`, {
      hint: 'Its checksum matches, so it was written so. Use another backup.',
    });
  }
  return seekableOffsets(summary);
}

function pgRestoreArgs(o: RestoreArchiveOptions, listFile: string | undefined, file: string | undefined, jobs: number): string[] {
  const args = ['--exit-on-error', '--no-password', '--verbose', `--dbname=${o.target}`];
  if (o.noOwner) args.push('--no-owner', '--no-privileges');
  if (listFile) args.push(`--use-list=${listFile}`);
  if (jobs > 1) args.push(`--jobs=${jobs}`);
  if (file) args.push(file);
  return args;
}

function psqlArgs(o: RestoreArchiveOptions): string[] {
  return ['--no-psqlrc', '--no-password', '--quiet', '-v', 'ON_ERROR_STOP=1', `--dbname=${o.target}`];
}

/**
 * Reads pg_restore --verbose: progress by table (when it reads the file itself), the moment all
 * data is loaded, and only the lines that are not its chatter for the error message. With
 * --jobs, items finish out of order: the data counts as loaded once every table's data item has
 * finished, and the first post-data item proves nothing.
 */
function pgRestoreOutput(o: RestoreArchiveOptions, fromFile: boolean, jobs: number): { onStderr(line: string): void; keep(line: string): boolean } {
  // Single-job, pg_restore restores all data before any post-data item (index, constraint,
  // trigger, …), each item committed before the next starts.
  const tables = o.tables?.length || o.manifest.tables.length;
  let tablesDone = 0;
  // the tables whose data must have arrived, by name (schema.name recorded), counted
  const pending = new Map<string, number>();
  for (const t of o.tables?.length ? [] : o.manifest.tables) {
    const name = t.slice(t.indexOf('.') + 1);
    pending.set(name, (pending.get(name) ?? 0) + 1);
  }
  let sawData = false;
  let loaded = false;
  const done = () => {
    loaded = true;
    o.onDataLoaded?.();
  };
  return {
    onStderr(line) {
      if (jobs > 1) {
        // pg_restore names the table without its schema: "finished item 3350 TABLE DATA users"
        const finished = /^pg_restore: finished item \d+ TABLE DATA (.+)$/.exec(line);
        if (finished) {
          const name = finished[1]!;
          o.onProgress?.(++tablesDone, tables, name);
          // only the tables the backup recorded count: an unexpected item can delay the moment, never advance it
          const left = pending.get(name);
          if (left !== undefined) {
            pending.set(name, left - 1);
            if (left === 1) pending.delete(name);
            if (pending.size === 0 && !loaded) done();
          }
        }
        log.debug(line);
        return;
      }
      const data = /^pg_restore: processing data for table "(.+)"/.exec(line);
      if (data && fromFile) o.onProgress?.(++tablesDone, tables, data[1]!);
      if (data || /^pg_restore: processing BLOBS/.test(line)) sawData = true;
      else if (sawData && !loaded && /^pg_restore: creating /.test(line)) done();
      log.debug(line);
    },
    keep: (line) => !/^pg_restore: (creating|processing|executing|connecting|launching|finished|from TOC|setting owner)/.test(line),
  };
}

/**
 * The stored object as stages: its bytes through sha256 (reporting `onBytes`), decrypted (the
 * plaintext's sha256 taken) and decompressed (unless `compressed`: the caller decompresses). `result()` afterwards: the checksum, and a DAMAGED
 * `problem` when the decrypted bytes are not those the backup wrote.
 */
function storedStages(
  o: RestoreArchiveOptions,
  onBytes?: (n: number) => void,
  compressed = false,
): { stages(): Promise<(NodeJS.ReadableStream | NodeJS.WritableStream)[]>; result(): { checksum: ChecksumResult; problem: BackupError | undefined } } {
  const m = o.manifest;
  const tap = hashTap(onBytes);
  const plainTap = hashTap();
  return {
    async stages() {
      const compression = streamCompressionOf(m.file);
      let source: Readable | undefined;
      try {
        source = m.encryption ? await openPlain(o, tap.stage) : o.repo.openData(m);
        const stages: (NodeJS.ReadableStream | NodeJS.WritableStream)[] = m.encryption ? [source, plainTap.stage] : [source, tap.stage];
        if (compression && !compressed) stages.push(decompressStage(compression, o.zstd, m.file));
        return stages;
      } catch (err) {
        source?.destroy();
        throw err;
      }
    },
    result() {
      const checksum = checksumOf(m, tap.result());
      const problem =
        m.encryption && m.plain_sha256 && plainTap.result().sha256 !== m.plain_sha256
          ? new BackupError('DAMAGED', `${m.file} decrypts to other bytes than the backup wrote (sha256 of the plaintext differs)`, {
              hint: 'The manifest or the file was changed after the backup. Use another backup.',
            })
          : undefined;
      return { checksum, problem };
    },
  };
}

/**
 * Starts the program (`program`) and streams the stored object through sha256 (and decryption,
 * decompression) into it, or, when it reads the file itself, reads it alongside to check its
 * sha256. The zstd program hands its output to the program directly, as `zstd -dc | pg_restore`
 * does. A failed read stops the program.
 */
async function feed(
  o: RestoreArchiveOptions,
  program: (inputFrom?: Readable) => Program,
  direct: string | undefined,
): Promise<{ run: Program; fed: { checksum: ChecksumResult; readError: unknown } }> {
  const m = o.manifest;
  let fed = 0;
  // the program starts once the stages are ready; the bytes it is fed count as its progress
  const started: { run?: Program } = {};
  const handOff = direct === undefined && streamCompressionOf(m.file) === 'zstd' && o.zstd !== undefined && o.zstd !== 'builtin';
  const stored = storedStages(
    o,
    direct
      ? undefined
      : (n) => {
          started.run?.progress(n - fed);
          fed = n;
          o.onProgress?.(n, m.size_bytes, 'bytes');
        },
    handOff,
  );
  const stages = await stored.stages();
  const zstd = handOff ? decompressForProgram(o.zstd, m.file) : undefined;
  // started in the same turn as zstd, before a byte reaches zstd: its output is the program's alone
  const run = (started.run = program(zstd?.output));
  if (zstd) stages.push(zstd.stage, discard());
  else if (direct) {
    run.stdin.end();
    stages.push(discard());
  } else {
    stages.push(run.stdin);
  }
  let readError: unknown;
  try {
    await pipeline(stages, { signal: o.signal });
  } catch (err) {
    readError = err;
    run.stop();
  }
  const { checksum, problem } = stored.result();
  return { run, fed: { checksum, readError: readError ?? problem } };
}

/** The program failed: the environment (refused, unreachable) or the restore itself. */
function restoreFailed(o: RestoreArchiveOptions, run: Program, exit: ProgramExit): BackupError {
  const tool = o.manifest.format === 'custom' ? 'pg_restore' : 'psql';
  const tail = run.tail.join('\n');
  const first = run.withoutName(run.firstError() ?? `${tool} exited with ${exit.error ? -1 : exit.code}`);
  // Refused or unreachable: the environment failed, which says nothing about the backup.
  const environment = classifyLibpqStderr(tail);
  if (environment) {
    return new BackupError(environment, `${tool} could not restore into "${o.target}" on ${o.db.host}:${o.db.port}: ${first}`, {
      detail: tail,
      hint:
        environment === 'PRIVILEGE'
          ? `${o.db.user} needs that privilege on ${o.db.host}:${o.db.port}: grant it, or restore as the database's owner or a superuser (README: Database privileges).`
          : 'Check the database server and the settings for it (DB_* for restore, VERIFY_DB_* for drills).',
    });
  }
  return new BackupError('RESTORE_FAILED', `${tool} failed restoring into "${o.target}": ${first}`, {
    detail: tail,
    hint: /role .* does not exist/.test(tail)
      ? 'The dump refers to roles this server lacks: add --with-roles to recreate them first.'
      : `Read ${tool}'s messages above.`,
  });
}

/** The stored object could not be read: a storage problem (STORAGE, or ABORTED), which says nothing about the backup. */
function readFailed(storage: string, file: string, err: unknown): BackupError {
  const code = err instanceof BackupError && err.code === 'ABORTED' ? 'ABORTED' : 'STORAGE';
  return new BackupError(code, `reading ${file} from ${storage} failed: ${redact((err as Error).message)}`, {
    hint: `Check the storage target ${storage}, then run it again.`,
    cause: err,
  });
}
