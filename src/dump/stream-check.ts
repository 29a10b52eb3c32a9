import readline from 'node:readline';
import { Writable } from 'node:stream';
import zlib from 'node:zlib';
import type { BackupFormat } from '../config';
import { BackupError } from '../errors';
import { qualified, type TableRef } from '../pg/catalog';
import { redact } from '../redact';
import { readToc, tocEntries } from './toc';

/**
 * Checks a dump while it streams to storage, so no target needs a local copy to be checked:
 * `stream` receives the same bytes as the targets; `verify` then proves the archive is
 * structurally sound and holds the data of every user table of the dump's snapshot.
 * The stream never fails the pipeline; problems surface in `verify`.
 */
export interface ArchiveCheck {
  readonly stream: Writable;
  verify(tables: TableRef[]): Promise<void>;
}

export function archiveCheck(format: BackupFormat, pgRestore: string): ArchiveCheck {
  return format === 'custom' ? customCheck(pgRestore) : plainCheck();
}

function key(schema: string, name: string): string {
  return `${schema}\u0000${name}`;
}

function requireTables(found: Set<string>, tables: TableRef[]): void {
  const missing = tables.filter((t) => !found.has(key(t.schema, t.name)));
  if (missing.length === 0) return;
  const names = missing.slice(0, 10).map(qualified).join(', ');
  throw new BackupError('DUMP_INVALID', `the dump has no data for ${missing.length} table(s): ${names}${missing.length > 10 ? ', …' : ''}`, {
    hint: 'Check that DB_USER may read every table (GRANT SELECT) and that no pg_dump option excludes them.',
  });
}

/** `pg_restore --list` reads the archive's table of contents from the stream, then the rest is discarded. */
function customCheck(pgRestore: string): ArchiveCheck {
  const toc = readToc(pgRestore);
  return {
    stream: toc.sink,
    async verify(tables) {
      const { code, stdout, stderr } = await toc.result();
      if (code !== 0) {
        const msg = redact(stderr.trim());
        throw new BackupError('DUMP_INVALID', `pg_restore cannot read the archive: ${msg.split('\n')[0] ?? `exit ${code}`}`, {
          detail: msg,
          hint: 'The dump is damaged; it was not kept. Check the pg_dump messages in the log.',
        });
      }
      const found = new Set<string>();
      // e.g. "3345; 0 16390 TABLE DATA public users postgres"; schema, name and owner may contain
      // spaces, so record every split and let the lookup of the real (schema, name) match.
      for (const { entry } of tocEntries(stdout)) {
        if (!entry.startsWith('TABLE DATA ')) continue;
        const parts = entry.slice('TABLE DATA '.length).split(' ');
        for (let i = 1; i < parts.length; i++) {
          for (let j = i + 1; j <= parts.length; j++) found.add(key(parts.slice(0, i).join(' '), parts.slice(i, j).join(' ')));
        }
      }
      requireTables(found, tables);
    },
  };
}

/** A gzip'd plain SQL dump must decompress whole, have a data section per table and pg_dump's last line. */
function plainCheck(): ArchiveCheck {
  const gunzip = zlib.createGunzip();
  let failure: Error | undefined;
  gunzip.on('error', (err) => (failure ??= err));
  const found = new Set<string>();
  let complete = false;
  const rl = readline.createInterface({ input: gunzip, crlfDelay: Infinity });
  const re = /^-- Data for Name: (.+); Type: TABLE DATA; Schema: (.+); Owner: /;
  rl.on('line', (line) => {
    if (!line.startsWith('-- ')) return;
    const m = re.exec(line);
    if (m) found.add(key(m[2]!, m[1]!));
    else if (line.startsWith('-- PostgreSQL database dump complete')) complete = true;
  });
  const closed = new Promise<void>((resolve) => rl.once('close', resolve));
  const stream = new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      if (failure || gunzip.destroyed) return cb();
      if (gunzip.write(chunk)) return cb();
      const go = () => {
        gunzip.off('drain', go);
        gunzip.off('close', go);
        cb();
      };
      gunzip.once('drain', go);
      gunzip.once('close', go);
    },
    final(cb) {
      if (!gunzip.destroyed) gunzip.end();
      cb();
    },
  });
  return {
    stream,
    async verify(tables) {
      if (!failure) await Promise.race([closed, new Promise((r) => gunzip.once('close', r))]);
      if (failure) {
        throw new BackupError('DUMP_INVALID', `the compressed SQL dump cannot be read: ${failure.message}`, { hint: 'The dump is damaged; it was not kept.' });
      }
      if (!complete)
        throw new BackupError('DUMP_INVALID', 'the SQL dump is truncated (no "dump complete" line)', {
          hint: 'pg_dump stopped early; see its messages in the log.',
        });
      requireTables(found, tables);
    },
  };
}
