import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline as pipelineStreams, type Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import type { DbConfig } from '../config';
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
import { discard, hashTap } from '../util/streams';
import { readToc, tocEntries } from '../dump/toc';

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

/** The archive's table of contents (`pg_restore --list`), read from the start of the stored object. */
async function listArchive(o: RestoreArchiveOptions): Promise<string> {
  const toc = readToc(o.bins);
  // Only the start of the archive is needed: stop reading once pg_restore has the table of
  // contents. A read error ends pg_restore's input, so it cannot wait for more.
  const source = await openPlain(o);
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

/**
 * Restores a stored dump into the existing, empty database `target`, stopping at the first
 * error. What becomes of `target` after an error is the caller's to do and to say. The object streams from its storage (local or remote) through sha256 into pg_restore
 * (custom) or gunzip and psql (plain); a checksum that does not match the manifest fails the
 * restore even when the restore tool did not notice.
 */
export async function restoreArchive(o: RestoreArchiveOptions): Promise<{ checksum: ChecksumResult }> {
  const m = o.manifest;
  const tool = m.format === 'custom' ? 'pg_restore' : 'psql';
  const appName = `basement-backup ${tool} ${process.pid}`;
  // A custom archive on local disk is read by pg_restore itself (as fast as a plain pg_restore),
  // while a second read of the same (cached) file checks its sha256; anything else streams in.
  const direct = m.format === 'custom' && !m.encryption ? o.repo.localPath(m.file) : undefined;
  const listDir = m.format === 'custom' && o.tables && o.tables.length > 0 ? await writeTableList(o) : undefined;
  try {
    const run = runProgram({
      name: tool,
      file: o.bins.path(tool),
      args: m.format === 'custom' ? pgRestoreArgs(o, listDir, direct) : psqlArgs(o),
      env: libpqEnv(o.db, o.bins.env, o.target, appName),
      input: true,
      signal: o.signal,
      ...(m.format === 'custom' ? pgRestoreOutput(o, direct) : {}),
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
    run.stdout.resume();
    const { checksum, readError } = await feed(o, run, direct);
    const exit = await run.exited;
    if (o.signal?.aborted) throw new BackupError('ABORTED', 'the restore was stopped', { hint: 'Run it again.' });
    if (!readError && !checksum.ok) throw damaged(m, checksum);
    if (exit.stalled) {
      await stopSessions(o.db, o.target, appName);
      throw new BackupError('STALLED', exit.stalled.message, { hint: exit.stalled.hint, detail: run.tail.join('\n') || undefined });
    }
    if (readError) {
      if (readError instanceof BackupError && ['DAMAGED', 'NO_KEY', 'KEY_FILE'].includes(readError.code)) throw readError;
      if (m.format === 'plain' && (readError as { code?: string }).code?.startsWith('Z_')) throw damaged(m, checksum);
      throw readFailed(o.repo.name, m.file, readError);
    }
    if (exit.code !== 0) throw restoreFailed(o, run, exit);
    return { checksum };
  } finally {
    if (listDir) fs.rmSync(listDir, { recursive: true, force: true });
  }
}

/** Writes the --use-list file that selects `o.tables` into a new private directory, and returns the directory. */
async function writeTableList(o: RestoreArchiveOptions): Promise<string> {
  const toc = await listArchive(o);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'basement-backup-restore-'));
  fs.writeFileSync(path.join(dir, 'tables.list'), tableList(toc, o.tables ?? []), { mode: 0o600 });
  return dir;
}

function pgRestoreArgs(o: RestoreArchiveOptions, listDir: string | undefined, direct: string | undefined): string[] {
  const args = ['--exit-on-error', '--no-password', '--verbose', `--dbname=${o.target}`];
  if (o.noOwner) args.push('--no-owner', '--no-privileges');
  if (listDir) args.push(`--use-list=${path.join(listDir, 'tables.list')}`);
  if (direct) args.push(direct);
  return args;
}

function psqlArgs(o: RestoreArchiveOptions): string[] {
  return ['--no-psqlrc', '--no-password', '--quiet', '-v', 'ON_ERROR_STOP=1', `--dbname=${o.target}`];
}

/**
 * Reads pg_restore --verbose: progress by table (when it reads the file itself), the moment all
 * data is loaded, and only the lines that are not its chatter for the error message.
 */
function pgRestoreOutput(o: RestoreArchiveOptions, direct: string | undefined): { onStderr(line: string): void; keep(line: string): boolean } {
  // pg_restore restores all data before any post-data item (index, constraint, trigger, …), each
  // item committed before the next starts.
  let tablesDone = 0;
  let sawData = false;
  let loaded = false;
  return {
    onStderr(line) {
      const data = /^pg_restore: processing data for table "(.+)"/.exec(line);
      if (data && direct) o.onProgress?.(++tablesDone, o.tables?.length || o.manifest.tables.length, data[1]!);
      if (data || /^pg_restore: processing BLOBS/.test(line)) sawData = true;
      else if (sawData && !loaded && /^pg_restore: creating /.test(line)) {
        loaded = true;
        o.onDataLoaded?.();
      }
      log.debug(line);
    },
    keep: (line) => !/^pg_restore: (creating|processing|executing|connecting|launching|finished|from TOC|setting owner)/.test(line),
  };
}

/**
 * Streams the stored object through sha256 (and gunzip) into the program, or, when it reads the
 * file itself, reads it alongside to check its sha256. A failed read stops the program.
 */
async function feed(o: RestoreArchiveOptions, run: Program, direct: string | undefined): Promise<{ checksum: ChecksumResult; readError: unknown }> {
  const m = o.manifest;
  let fed = 0;
  const tap = hashTap(
    direct
      ? undefined
      : (n) => {
          run.progress(n - fed);
          fed = n;
          o.onProgress?.(n, m.size_bytes, 'bytes');
        },
  );
  const plainTap = hashTap();
  let stages: (NodeJS.ReadableStream | NodeJS.WritableStream)[];
  try {
    stages = m.encryption ? [await openPlain(o, tap.stage), plainTap.stage] : [o.repo.openData(m), tap.stage];
  } catch (err) {
    run.stop();
    await run.exited;
    throw err;
  }
  if (m.format === 'plain') stages.push(zlib.createGunzip());
  if (direct) {
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
  if (!readError && m.encryption && m.plain_sha256 && plainTap.result().sha256 !== m.plain_sha256) {
    readError = new BackupError('DAMAGED', `${m.file} decrypts to other bytes than the backup wrote (sha256 of the plaintext differs)`, {
      hint: 'The manifest or the file was changed after the backup. Use another backup.',
    });
  }
  return { checksum: checksumOf(m, tap.result()), readError };
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
