import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { BackupFormat } from '../config/types';
import { BackupError } from '../errors';
import { qualified, type TableRef } from '../pg/catalog';
import { ArchiveProblem } from './archive-format';
import { recordedOffsets, type DataOffsets } from './archive-offsets';
import { CustomArchiveReader } from './custom-archive';
import { SqlDumpReader } from './sql-dump';

/**
 * Checks a dump while it streams to storage, so no target needs a local copy to be checked:
 * `stream` receives the same bytes as the targets; `verify` then proves the archive is
 * structurally sound and holds the data of every user table of the dump's snapshot.
 * The stream never fails the pipeline; problems surface in `verify`.
 */
export interface ArchiveCheck {
  readonly stream: Writable;
  /** Resolves (custom format) with where the archive's data blocks are, for the manifest. */
  verify(tables: TableRef[]): Promise<{ offsets?: DataOffsets | undefined }>;
}

export function archiveCheck(format: BackupFormat): ArchiveCheck {
  return format === 'custom' ? customCheck() : plainCheck();
}

function key(schema: string, name: string): string {
  return `${schema}\u0000${name}`;
}

/** The reader's summary once the whole stream has passed; a problem it found is DUMP_INVALID. */
function endOf<T>(reader: { end(): T }): T {
  try {
    return reader.end();
  } catch (err) {
    if (!(err instanceof ArchiveProblem)) throw err;
    throw new BackupError('DUMP_INVALID', err.message, { hint: HINTS[err.kind] });
  }
}

function requireTables(found: Set<string>, tables: TableRef[]): void {
  const missing = tables.filter((t) => !found.has(key(t.schema, t.name)));
  if (missing.length === 0) return;
  const names = missing.slice(0, 10).map(qualified).join(', ');
  throw new BackupError('DUMP_INVALID', `the dump has no data for ${missing.length} table(s): ${names}${missing.length > 10 ? ', …' : ''}`, {
    hint: 'Check that DB_USER may read every table (GRANT SELECT) and that no pg_dump option excludes them.',
  });
}

/** Messages' hints by kind of problem; the backup is never kept. */
const HINTS: Record<ArchiveProblem['kind'], string> = {
  truncated: "pg_dump's output stopped early, so the dump was not kept. Read pg_dump's messages in the log; the next backup retries.",
  damaged: "pg_dump's output is not a complete archive, so the dump was not kept. Read pg_dump's messages in the log and check PG_BIN_DIR's pg_dump.",
  unsupported: 'The dump was not kept. Point PG_BIN_DIR at a PostgreSQL 17 or older client (e.g. /usr/lib/postgresql/17/bin), or update basement-backup.',
};

/**
 * Reads the whole custom archive as it streams (custom-archive.ts): header, table of contents,
 * and every data block up to the end of the file. pg_restore is not involved.
 */
function customCheck(): ArchiveCheck {
  const reader = new CustomArchiveReader();
  const stream = new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      reader.write(chunk);
      cb();
    },
  });
  return {
    stream,
    async verify(tables) {
      await finished(stream); // every byte of the dump has been read
      const summary = endOf(reader);
      const found = new Set(summary.entries.filter((e) => e.desc === 'TABLE DATA' && e.hasData).map((e) => key(e.namespace ?? '', e.tag ?? '')));
      requireTables(found, tables);
      return { offsets: recordedOffsets(summary) };
    },
  };
}

/**
 * A plain SQL dump, as pg_dump wrote it (before any compression stage), must have a data section
 * per table and end with pg_dump's closing lines (sql-dump.ts).
 */
function plainCheck(): ArchiveCheck {
  const sql = new SqlDumpReader();
  const stream = new Writable({
    highWaterMark: 1024 * 1024,
    write(chunk: Buffer, _enc, cb) {
      sql.write(chunk);
      cb();
    },
  });
  return {
    stream,
    async verify(tables) {
      await finished(stream);
      const summary = endOf(sql);
      requireTables(new Set(summary.tables.map((t) => key(t.schema, t.name))), tables);
      return {};
    },
  };
}
