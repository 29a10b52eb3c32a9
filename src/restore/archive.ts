import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import type { DbConfig } from '../config';
import { BackupError } from '../errors';
import { log } from '../logger';
import type { PgBinaries } from '../pg/binaries';
import { diagnoseSessions, stopSessions } from '../pg/activity';
import { classifyLibpqStderr, libpqEnv } from '../pg/connection';
import { watchForStall, type StallWatch } from '../pg/watchdog';
import { redact } from '../redact';
import type { Manifest } from '../storage/manifest';
import type { Storage } from '../storage/types';
import { childStdinSink, discard, hashTap } from '../util/streams';
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
  db: DbConfig;
  target: string;
  storage: Storage;
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

function exitOf(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('error', () => resolve(-1));
    child.once('close', (c) => resolve(c));
  });
}

/** The archive's table of contents (`pg_restore --list`), read from the start of the stored object. */
async function listArchive(o: RestoreArchiveOptions): Promise<string> {
  const toc = readToc(o.bins.path('pg_restore'));
  // Only the start of the archive is needed: stop reading once pg_restore has the table of
  // contents. A read error ends pg_restore's input, so it cannot wait for more.
  const source = o.storage.openRead(o.manifest.file);
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
    throw readFailed(o.storage.name, o.manifest.file, readError);
  }
  if (code !== 0) {
    throw new BackupError('RESTORE_FAILED', `pg_restore --list cannot read ${o.manifest.file}: ${redact(stderr.trim().split('\n')[0] ?? '')}`, {
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
  const tool = o.manifest.format === 'custom' ? 'pg_restore' : 'psql';
  const appName = `basement-backup ${tool} ${process.pid}`;
  const env = libpqEnv(o.db, o.target, process.env, appName);
  const tail: string[] = [];
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
  };
  const m = o.manifest;
  let listDir: string | undefined;
  let child: ChildProcessWithoutNullStreams;
  // A custom archive on local disk is read by pg_restore itself (as fast as a plain pg_restore),
  // while a second read of the same (cached) file checks its sha256; anything else streams in.
  const direct = m.format === 'custom' ? o.storage.localPath?.(m.file) : undefined;
  let tablesDone = 0;
  if (m.format === 'custom') {
    const args = ['--exit-on-error', '--no-password', '--verbose', `--dbname=${o.target}`];
    if (o.noOwner) args.push('--no-owner', '--no-privileges');
    if (o.tables && o.tables.length > 0) {
      const toc = await listArchive(o);
      listDir = fs.mkdtempSync(path.join(os.tmpdir(), 'basement-backup-restore-'));
      const listFile = path.join(listDir, 'tables.list');
      fs.writeFileSync(listFile, tableList(toc, o.tables), { mode: 0o600 });
      args.push(`--use-list=${listFile}`);
    }
    if (direct) args.push(direct);
    child = spawn(o.bins.path('pg_restore'), args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    // pg_restore restores all data before any post-data item (index, constraint, trigger, …), each
    // item committed before the next starts.
    let sawData = false;
    let loaded = false;
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
      const clean = redact(line);
      const data = /^pg_restore: processing data for table "(.+)"/.exec(clean);
      if (data && direct) o.onProgress?.(++tablesDone, o.tables?.length || m.tables.length, data[1]!);
      if (data || /^pg_restore: processing BLOBS/.test(clean)) sawData = true;
      else if (sawData && !loaded && /^pg_restore: creating /.test(clean)) {
        loaded = true;
        o.onDataLoaded?.();
      }
      if (!/^pg_restore: (creating|processing|executing|connecting|launching|finished|from TOC|setting owner)/.test(clean)) keep(clean);
      log.debug(clean);
    });
  } else {
    const args = ['--no-psqlrc', '--no-password', '--quiet', '-v', 'ON_ERROR_STOP=1', `--dbname=${o.target}`];
    child = spawn(o.bins.path('psql'), args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    readline.createInterface({ input: child.stderr }).on('line', (line) => keep(redact(line)));
  }
  let stalled: BackupError | undefined;
  const watch: StallWatch | undefined =
    o.stallMs === undefined
      ? undefined
      : watchForStall(child, {
          program: tool,
          stallMs: o.stallMs,
          diagnose: () => diagnoseSessions(o.db, o.target, { appName }, tool),
          lockHint: (pid) =>
            `End the blocking transaction (COMMIT or ROLLBACK it in its application${pid ? `, or SELECT pg_terminate_backend(${pid})` : ''}), then run it again.`,
          onStall: (err) => (stalled = err),
        });
  child.stdout.resume();
  const exited = exitOf(child);
  const onAbort = () => child.kill('SIGTERM');
  o.signal?.addEventListener('abort', onAbort, { once: true });

  let fed = 0;
  const tap = hashTap(
    direct
      ? undefined
      : (n) => {
          watch?.progress(n - fed);
          fed = n;
          o.onProgress?.(n, m.size_bytes, 'bytes');
        },
  );
  const stages: (NodeJS.ReadableStream | NodeJS.WritableStream)[] = [o.storage.openRead(m.file), tap.stage];
  if (m.format === 'plain') stages.push(zlib.createGunzip());
  if (direct) {
    child.stdin.end();
    stages.push(discard());
  } else {
    stages.push(childStdinSink(child));
  }
  let readError: unknown;
  try {
    await pipeline(stages as unknown as [Readable, Writable], { signal: o.signal });
  } catch (err) {
    readError = err;
    child.kill('SIGTERM');
  }
  const code = await exited;
  watch?.stop();
  if (listDir) fs.rmSync(listDir, { recursive: true, force: true });
  o.signal?.removeEventListener('abort', onAbort);
  if (o.signal?.aborted) throw new BackupError('ABORTED', 'the restore was stopped', { hint: 'Run it again.' });
  const checksum = checksumOf(m, tap.result());
  if (!readError && !checksum.ok) throw damaged(m, checksum);
  if (stalled) {
    await stopSessions(o.db, o.target, appName);
    throw new BackupError('STALLED', stalled.message, { hint: stalled.hint, detail: tail.join('\n') || undefined });
  }
  if (readError) {
    if (m.format === 'plain' && (readError as { code?: string }).code?.startsWith('Z_')) throw damaged(m, checksum);
    throw readFailed(o.storage.name, m.file, readError);
  }
  if (code !== 0) {
    const first = tail.find((l) => /error|fatal/i.test(l)) ?? tail[tail.length - 1] ?? `${tool} exited with ${code}`;
    // Refused or unreachable: the environment failed, which says nothing about the backup.
    const environment = classifyLibpqStderr(tail.join('\n'));
    if (environment) {
      throw new BackupError(
        environment,
        `${tool} could not restore into "${o.target}" on ${o.db.host}:${o.db.port}: ${first.replace(/^(pg_restore|psql): (error: )?/, '')}`,
        {
          detail: tail.join('\n'),
          hint:
            environment === 'PRIVILEGE'
              ? `${o.db.user} needs that privilege on ${o.db.host}:${o.db.port}: grant it, or restore as the database's owner or a superuser (README: Database privileges).`
              : 'Check the database server and the settings for it (DB_* for restore, VERIFY_DB_* for drills).',
        },
      );
    }
    throw new BackupError('RESTORE_FAILED', `${tool} failed restoring into "${o.target}": ${first.replace(/^(pg_restore|psql): (error: )?/, '')}`, {
      detail: tail.join('\n'),
      hint: /role .* does not exist/.test(tail.join('\n'))
        ? 'The dump refers to roles this server lacks: add --with-roles to recreate them first.'
        : `Read ${tool}'s messages above.`,
    });
  }
  return { checksum };
}

/** The stored object could not be read: a storage problem (STORAGE, or ABORTED), which says nothing about the backup. */
function readFailed(storage: string, file: string, err: unknown): BackupError {
  const code = err instanceof BackupError && err.code === 'ABORTED' ? 'ABORTED' : 'STORAGE';
  return new BackupError(code, `reading ${file} from ${storage} failed: ${redact((err as Error).message)}`, {
    hint: `Check the storage target ${storage}, then run it again.`,
    cause: err,
  });
}
