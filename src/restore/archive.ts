import { execFile, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { DbConfig } from '../config';
import { BackupError } from '../errors';
import { log } from '../logger';
import type { PgBinaries } from '../pg/binaries';
import { libpqEnv } from '../pg/connection';
import { redact } from '../redact';
import type { Manifest } from '../storage/manifest';
import type { Storage } from '../storage/types';

const execFileP = promisify(execFile);

export interface ChecksumResult {
  ok: boolean;
  sha256: string;
  sizeBytes: number;
}

/** Streams the stored data object through sha256 and compares with the manifest. */
export async function checkStoredChecksum(storage: Storage, m: Manifest): Promise<ChecksumResult> {
  const hash = crypto.createHash('sha256');
  let size = 0;
  try {
    await pipeline(storage.openRead(m.file), async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
      }
      yield* [];
    });
  } catch (err) {
    throw new BackupError('DAMAGED', `cannot read ${m.file} from ${storage.name}: ${(err as Error).message}`, {
      hint: 'The data file is missing or unreadable; use an older backup (`basement-backup list`).',
    });
  }
  const sha256 = hash.digest('hex');
  return { ok: sha256 === m.sha256 && size === m.size_bytes, sha256, sizeBytes: size };
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
  file: string;
  format: Manifest['format'];
  /** Only these tables (schema.name), with their data. */
  tables?: string[];
  /** Leave out ownership and privileges (restore drills, other servers). */
  noOwner?: boolean;
  onProgress?: (done: number, total: number, item: string) => void;
  signal?: AbortSignal;
}

/** How many TABLE DATA entries pg_restore will process, for progress. */
async function countTableData(pgRestore: string, file: string, tables?: string[]): Promise<number> {
  try {
    const { stdout } = await execFileP(pgRestore, ['--list', file], { maxBuffer: 256 * 1024 * 1024 });
    const lines = stdout.split('\n').filter((l) => / TABLE DATA /.test(l));
    if (!tables || tables.length === 0) return lines.length;
    return lines.filter((l) => tables.some((t) => l.includes(` TABLE DATA ${t.replace('.', ' ')} `))).length;
  } catch {
    return 0;
  }
}

/**
 * A pg_restore --use-list file that selects exactly `tables` (schema.name) with their data, and
 * the schemas they are in (public exists in every new database). pg_restore's own --schema and
 * --table would restore every named table in every named schema, and not create the schemas.
 */
async function tableListFile(pgRestore: string, file: string, tables: string[], dir: string): Promise<string> {
  const { stdout } = await execFileP(pgRestore, ['--list', file], { maxBuffer: 256 * 1024 * 1024 });
  const names = tables.map((t) => (t.includes('.') ? t : `public.${t}`)).map((t) => t.replace('.', ' '));
  const schemas = [...new Set(names.map((n) => n.slice(0, n.indexOf(' '))))].filter((s) => s !== 'public');
  const selected = stdout.split('\n').filter((line) => {
    const entry = /^\d+; \d+ \d+ (.*)$/.exec(line)?.[1];
    if (entry === undefined) return false;
    return (
      schemas.some((s) => entry.startsWith(`SCHEMA - ${s} `)) || names.some((n) => entry.startsWith(`TABLE ${n} `) || entry.startsWith(`TABLE DATA ${n} `))
    );
  });
  const listFile = path.join(dir, 'tables.list');
  fs.writeFileSync(listFile, selected.join('\n') + '\n', { mode: 0o600 });
  return listFile;
}

/**
 * Restores a stored dump into the existing, empty database `target`, stopping at the first
 * error. Custom archives go through pg_restore, plain ones (gzip'd SQL) through psql.
 */
export async function restoreArchive(o: RestoreArchiveOptions): Promise<void> {
  const env = libpqEnv(o.db, o.target);
  const tail: string[] = [];
  let child: ChildProcess;
  let listDir: string | undefined;
  if (o.format === 'custom') {
    const total = o.onProgress ? await countTableData(o.bins.path('pg_restore'), o.file, o.tables) : 0;
    const args = ['--exit-on-error', '--no-password', '--verbose', `--dbname=${o.target}`];
    if (o.noOwner) args.push('--no-owner', '--no-privileges');
    if (o.tables && o.tables.length > 0) {
      listDir = fs.mkdtempSync(path.join(os.tmpdir(), 'basement-backup-restore-'));
      try {
        args.push(`--use-list=${await tableListFile(o.bins.path('pg_restore'), o.file, o.tables, listDir)}`);
      } catch (err) {
        fs.rmSync(listDir, { recursive: true, force: true });
        throw new BackupError('RESTORE_FAILED', `pg_restore --list cannot read ${o.file}: ${redact((err as Error).message)}`, {
          hint: `Check the file with \`basement-backup verify\`; the database "${o.target}" was removed again.`,
        });
      }
    }
    args.push(o.file);
    const c = spawn(o.bins.path('pg_restore'), args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    let done = 0;
    readline.createInterface({ input: c.stderr }).on('line', (line) => {
      const clean = redact(line);
      const m = /processing data for table "(.+)"/.exec(clean);
      if (m) {
        done++;
        o.onProgress?.(done, total, m[1]!);
      } else if (!/^pg_restore: (creating|processing|executing|connecting|launching|finished|from TOC|setting owner)/.test(clean)) {
        tail.push(clean);
        if (tail.length > 20) tail.shift();
      }
      log.debug('pg_restore: ' + clean);
    });
  } else {
    const args = ['--no-psqlrc', '--no-password', '--quiet', '-v', 'ON_ERROR_STOP=1', `--dbname=${o.target}`];
    const c = spawn(o.bins.path('psql'), args, { env, stdio: ['pipe', 'ignore', 'pipe'] });
    child = c;
    readline.createInterface({ input: c.stderr }).on('line', (line) => {
      tail.push(redact(line));
      if (tail.length > 20) tail.shift();
    });
    const size = fs.statSync(o.file).size;
    let read = 0;
    const input = fs.createReadStream(o.file);
    input.on('data', (c) => {
      read += c.length;
      o.onProgress?.(read, size, 'bytes');
    });
    pipeline(input, zlib.createGunzip(), c.stdin).catch((err: unknown) => {
      tail.push(`reading ${o.file}: ${(err as Error).message}`);
      c.kill('SIGTERM');
    });
  }
  const onAbort = () => child.kill('SIGTERM');
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const code = await new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(-1));
    child.once('close', (c) => resolve(c));
  });
  if (listDir) fs.rmSync(listDir, { recursive: true, force: true });
  o.signal?.removeEventListener('abort', onAbort);
  if (o.signal?.aborted) throw new BackupError('ABORTED', 'the restore was stopped', { hint: 'Run it again.' });
  if (code !== 0) {
    const tool = o.format === 'custom' ? 'pg_restore' : 'psql';
    const first = tail.find((l) => /error|fatal/i.test(l)) ?? tail[tail.length - 1] ?? `${tool} exited with ${code}`;
    throw new BackupError('RESTORE_FAILED', `${tool} failed restoring into "${o.target}": ${first.replace(/^(pg_restore|psql): (error: )?/, '')}`, {
      detail: tail.join('\n'),
      hint: /role .* does not exist/.test(tail.join('\n'))
        ? 'The dump refers to roles this server lacks: add --with-roles to recreate them first.'
        : `Read ${tool}'s messages above; the database "${o.target}" was removed again.`,
    });
  }
}
