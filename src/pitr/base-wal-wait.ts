/**
 * A base backup is good only once the WAL from its start to its stop is archived: this waits,
 * up to a deadline, until each target holding the backup's data holds every WAL file it needs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Target } from '../app';
import { asBackupError, BackupError } from '../errors';
import { log } from '../logger';
import { WalArchive } from '../wal/archive';

export interface WalWait {
  /** Targets that hold every file. */
  complete: Target[];
  /** For each other target: the files it still lacks, and the last error asking it, if any. */
  missing: Map<Target, { files: string[]; error: BackupError | undefined }>;
}

/** Polls each target's archive for `files` until all hold them all or `timeoutMs` passed; throws ABORTED when `signal` fires. `what` waits, for the log (default: base backup). */
export async function waitForWal(
  targets: Target[],
  files: string[],
  opts: { timeoutMs: number; signal: AbortSignal; pollMs?: number; what?: string },
): Promise<WalWait> {
  const deadline = Date.now() + opts.timeoutMs;
  const lacking = new Map(targets.map((t) => [t, new Set(files)]));
  const errors = new Map<Target, BackupError>();
  let pause = opts.pollMs ?? 25;
  let logged = false;
  for (;;) {
    await Promise.all(
      [...lacking].map(async ([t, left]) => {
        const archive = new WalArchive(t.name, t.pitr());
        try {
          for (const f of [...left]) if ((await archive.find(f)).length > 0) left.delete(f);
          errors.delete(t);
        } catch (err) {
          errors.set(t, asBackupError(err));
        }
      }),
    );
    const waiting = [...lacking].filter(([, left]) => left.size > 0);
    if (waiting.length === 0 || Date.now() >= deadline) break;
    if (!logged) {
      logged = true;
      log.info(`${opts.what ?? 'base backup'} waits for its WAL to be archived`, {
        files: `${files[0]}..${files[files.length - 1]}`,
        targets: waiting.map(([t]) => t.name).join(','),
        wait_s: Math.round(opts.timeoutMs / 1000),
      });
    }
    try {
      await sleep(Math.min(pause, Math.max(0, deadline - Date.now())), undefined, { signal: opts.signal });
    } catch {
      throw new BackupError('ABORTED', `the ${opts.what ?? 'base backup'} was stopped while it waited for its WAL`, { hint: 'Nothing of it was kept.' });
    }
    pause = Math.min(2000, Math.ceil(pause * 1.5));
  }
  const complete = targets.filter((t) => lacking.get(t)!.size === 0);
  const missing = new Map(
    targets.filter((t) => lacking.get(t)!.size > 0).map((t) => [t, { files: files.filter((f) => lacking.get(t)!.has(f)), error: errors.get(t) }]),
  );
  return { complete, missing };
}

/** Shows at most a few names: "000…02, 000…03 and 5 more". */
function some(files: string[]): string {
  return files.length <= 4 ? files.join(', ') : `${files.slice(0, 3).join(', ')} and ${files.length - 3} more`;
}

/** The error of a base backup whose WAL did not reach any target holding its data in time. */
export function walMissingError(wait: WalWait, waitedMs: number): BackupError {
  const lines = [...wait.missing].map(([t, m]) => `${t.name} lacks ${some(m.files)}${m.error ? ` (asking it failed: ${m.error.message})` : ''}`);
  return new BackupError('BASEBACKUP_FAILED', `the WAL this base backup needs was not archived within ${Math.round(waitedMs / 1000)} s: ${lines.join('; ')}`, {
    hint:
      'Nothing of this base backup was kept. Is the WAL being archived? Run `basement-backup wal-receive` (or the daemon with WAL_RECEIVE=on), or set archive_command to wal-push; ' +
      'SELECT pg_switch_wal(); completes the open segment at once (archive_timeout = 60 does it within a minute). Then run basebackup again, or raise BASEBACKUP_WAL_WAIT_SECONDS.',
  });
}
