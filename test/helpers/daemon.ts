import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { backupFiles, listJson, waitFor, type Spawned } from './cli';
import { createTestDb, query } from './pg';
import type { SmtpSink } from './smtp';

export interface ListedBackup {
  id: string;
  file: string;
  created_at: string;
  finished_at: string;
  duration_ms: number;
  trigger: 'schedule' | 'manual' | 'catch-up';
  state: string;
}

/** A small database with one table the tests can lock. */
export async function smallDb(): Promise<string> {
  const db = await createTestDb('daemon');
  await query(db, `CREATE TABLE items (id int PRIMARY KEY, note text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g`);
  return db;
}

/** Waits until pg_dump's session in `database` waits for its table lock, i.e. it is stuck mid-dump. */
export async function pgDumpBlocked(database: string): Promise<void> {
  await waitFor(
    async () =>
      (
        await query(
          'postgres',
          `SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE %IN ACCESS SHARE MODE%'`,
          [database],
        )
      ).length > 0,
    20_000,
    'pg_dump to block on the table lock',
  );
}

/**
 * Manifests in the backup directory, read straight from disk (cheap enough to poll). A daemon's
 * retention may remove one between the listing and the read: it is left out, as it is gone.
 */
export function manifestsOnDisk(dir: string): ListedBackup[] {
  return backupFiles(dir)
    .filter((n) => !n.startsWith('.') && n.endsWith('.manifest.json'))
    .flatMap((n) => {
      try {
        return [JSON.parse(fs.readFileSync(path.join(dir, 'backups', n), 'utf8')) as ListedBackup];
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw err;
      }
    });
}

export function tempFiles(dir: string): string[] {
  return backupFiles(dir).filter((n) => n.includes('.tmp-'));
}

/** `basement-backup list --json`, oldest first. */
export async function listed(env: Record<string, string>): Promise<ListedBackup[]> {
  return (await listJson<ListedBackup>(env)).sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
}

export function count(text: string, re: RegExp): number {
  return text.match(new RegExp(re.source, 'g'))?.length ?? 0;
}

export function backupLog(dir: string): string {
  const f = path.join(dir, 'logs', 'backup.log');
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '';
}

/** Pids of the processes named `name` whose parent is `ppid`. */
export function childrenNamed(ppid: number, name: string): number[] {
  const pids: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const stat = procStat(Number(p));
    if (stat?.comm === name && stat.ppid === ppid) pids.push(Number(p));
  }
  return pids;
}

/** Has process `pid` exited? A zombie (exited, not yet reaped) counts as exited. */
export function exited(pid: number): boolean {
  const stat = procStat(pid);
  return stat === undefined || stat.state === 'Z';
}

function procStat(pid: number): { comm: string; state: string; ppid: number } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), state: rest[0]!, ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}

/** The daemon's JSON log, as text ('' before it exists). */
export function jsonLog(dir: string): string {
  const f = path.join(dir, 'logs', 'basement-backup.jsonl');
  return fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '';
}

/** The backup lock file of `database` under the test's backup directory. */
export function lockFile(dir: string, database: string): string {
  return path.join(dir, 'backups', '.basement-backup', 'locks', `${encodeURIComponent(database)}.lock`);
}

/** The daemon's debug line after each early-warning check. */
export const CHECKED = /early warnings checked/;

/** Waits until the daemon has run two more checks from now: whatever the first saw, the second has acted on. */
export async function twoMoreChecks(d: Spawned): Promise<void> {
  const seen = count(d.output(), CHECKED);
  await d.waitForOutput(new RegExp(`(?:${CHECKED.source}[^]*){${seen + 2}}`), 60_000);
}

/** Exactly `n` mails, held through two more checks of the daemon (each would have sent any other). */
export async function exactly(sink: SmtpSink, d: Spawned, n: number): Promise<string[]> {
  await sink.waitFor(n, 60_000);
  await twoMoreChecks(d);
  await sink.settled();
  const subjects = sink.mails.map((m) => m.subject ?? '');
  expect(subjects, d.output().slice(-3000)).toHaveLength(n);
  return subjects;
}
