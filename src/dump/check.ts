import { execFile } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import type { BackupFormat } from '../config';
import { BackupError } from '../errors';
import { qualified, type TableRef } from '../pg/catalog';
import { redact } from '../redact';

const execFileP = promisify(execFile);

/**
 * Proves a finished dump is structurally sound before it gets its final name: the archive
 * can be read, and it holds the data of every user table that existed in the dump's snapshot.
 */
export async function checkArchive(opts: { file: string; format: BackupFormat; pgRestore: string; tables: TableRef[] }): Promise<void> {
  const found = opts.format === 'custom' ? await customTableData(opts.pgRestore, opts.file) : await plainTableData(opts.file);
  const missing = opts.tables.filter((t) => !found.has(key(t.schema, t.name)));
  if (missing.length > 0) {
    const names = missing.slice(0, 10).map(qualified).join(', ');
    throw new BackupError('DUMP_INVALID', `the dump has no data for ${missing.length} table(s): ${names}${missing.length > 10 ? ', …' : ''}`, {
      hint: 'Check that DB_USER may read every table (GRANT SELECT) and that no pg_dump option excludes them.',
    });
  }
}

function key(schema: string, name: string): string {
  return `${schema}\u0000${name}`;
}

/** `pg_restore --list` reads the archive's table of contents; collect its TABLE DATA entries. */
async function customTableData(pgRestore: string, file: string): Promise<Set<string>> {
  let stdout: string;
  try {
    ({ stdout } = await execFileP(pgRestore, ['--list', file], { maxBuffer: 256 * 1024 * 1024, env: { PATH: process.env.PATH ?? '' } }));
  } catch (err) {
    const stderr = redact(String((err as { stderr?: string }).stderr ?? err)).trim();
    throw new BackupError('DUMP_INVALID', `pg_restore cannot read the archive: ${stderr.split('\n')[0]}`, {
      detail: stderr,
      hint: 'The dump is damaged; it was not kept. Check disk health and the pg_dump messages in the log.',
    });
  }
  const found = new Set<string>();
  // e.g. "3345; 0 16390 TABLE DATA public users postgres"
  const re = /^\d+; \d+ \d+ TABLE DATA (.+)$/;
  for (const line of stdout.split('\n')) {
    const m = re.exec(line);
    if (!m) continue;
    // schema, name and owner are separated by spaces and may contain spaces themselves:
    // record every split so that a lookup of the real (schema, name) matches.
    const parts = m[1]!.split(' ');
    for (let i = 1; i < parts.length; i++) {
      for (let j = i + 1; j <= parts.length; j++) {
        found.add(key(parts.slice(0, i).join(' '), parts.slice(i, j).join(' ')));
      }
    }
  }
  return found;
}

/** A gzip'd plain SQL dump: it must decompress whole and end with pg_dump's completion line. */
async function plainTableData(file: string): Promise<Set<string>> {
  const found = new Set<string>();
  let complete = false;
  const re = /^-- Data for Name: (.+); Type: TABLE DATA; Schema: (.+); Owner: /;
  const gunzip = zlib.createGunzip();
  const input = fs.createReadStream(file).pipe(gunzip);
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  const failed = new Promise<never>((_, reject) => {
    gunzip.once('error', reject);
  });
  failed.catch(() => undefined);
  try {
    await Promise.race([
      (async () => {
        for await (const line of rl) {
          if (line.startsWith('-- ')) {
            const m = re.exec(line);
            if (m) found.add(key(m[2]!, m[1]!));
            else if (line.startsWith('-- PostgreSQL database dump complete')) complete = true;
          }
        }
      })(),
      failed,
    ]);
  } catch (err) {
    throw new BackupError('DUMP_INVALID', `the compressed SQL dump cannot be read: ${(err as Error).message}`, {
      hint: 'The dump is damaged; it was not kept. Check disk health.',
    });
  }
  if (!complete) {
    throw new BackupError('DUMP_INVALID', 'the SQL dump is truncated (no "dump complete" line)', {
      hint: 'pg_dump stopped early; see its messages in the log.',
    });
  }
  return found;
}
