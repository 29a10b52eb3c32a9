import fs from 'node:fs';
import path from 'node:path';
import { readToc, tocEntries } from '../dump/toc';
import { BackupError } from '../errors';
import type { RestoreArchiveOptions } from './archive-options';
import { openDump } from './read-back';
import { readFailed } from './restore-errors';

/** Writes the --use-list file that selects `o.tables` into the private directory `dir`, and returns its path. */
export async function writeTableList(o: RestoreArchiveOptions, dir: string): Promise<string> {
  const toc = await listArchive(o);
  const file = path.join(dir, 'tables.list');
  fs.writeFileSync(file, tableList(toc, o.tables ?? []), { mode: 0o600 });
  return file;
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
