import type { Readable } from 'node:stream';
import { log } from '../logger';
import { diagnoseSessions } from '../pg/activity';
import { libpqEnv } from '../pg/libpq';
import { runProgram, type Program } from '../pg/program';
import type { RestoreArchiveOptions } from './archive-options';

/**
 * The restore tool for `o`'s backup, ready to start: pg_restore (custom format; reading `file`
 * itself when given, with `jobs`, the tables of `listFile`) or psql (plain), into `o.target`,
 * reading its input from `inputFrom` (another program's output) or, without it, from `stdin`.
 * It is watched for stalls (BACKUP_STALL_MINUTES) and named `appName` on the server.
 */
export function restoreTool(
  o: RestoreArchiveOptions,
  appName: string,
  { listFile, file, jobs }: { listFile: string | undefined; file: string | undefined; jobs: number },
): (inputFrom?: Readable) => Program {
  const custom = o.manifest.format === 'custom';
  const tool = custom ? 'pg_restore' : 'psql';
  return (inputFrom) => {
    const started = runProgram({
      name: tool,
      file: o.bins.path(tool),
      args: custom ? pgRestoreArgs(o, listFile, file, jobs) : psqlArgs(o),
      env: libpqEnv(o.db, o.bins.env, o.target, appName),
      input: inputFrom === undefined,
      inputFrom,
      signal: o.signal,
      ...(custom ? pgRestoreOutput(o, file !== undefined, jobs) : {}),
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
