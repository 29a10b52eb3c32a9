import { performance } from 'node:perf_hooks';
import type { DbConfig } from '../config/types';
import { asBackupError, BackupError } from '../errors';
import { classifyPgError, connect } from '../pg/connection';
import { serverClockMs } from '../pg/catalog';
import { FUTURE_TOLERANCE_MS, keepUntilOf, type Manifest } from '../repository/manifest';
import { waitAtMost } from '../util/deadline';
import { formatAge } from '../util/format';

/**
 * A second opinion on this machine's clock, taken once per run: the database server's clock, or
 * why it could not be read, or the operator's word (`--trust-clock`). Everything that deletes or
 * chooses backups by their age (retention after a backup, `prune`, `sync`, so the daemon too)
 * goes through `clockDoubt` with one: a clock days off makes minutes-old backups look old and
 * runs pins out. Orphan removal (`Repository.removeOrphans`) needs no check: it spares only
 * objects dated after the clock, so a clock ahead removes no more than a right one would, and one
 * behind removes less.
 */
export type ClockReading = { kind: 'trusted' } | { kind: 'server'; serverMs: number; monotonicMs: number } | { kind: 'unknown'; error: BackupError };

/** The operator has checked the clock (`--trust-clock`): ages go by this machine's clock alone. */
export const TRUSTED_CLOCK: ClockReading = { kind: 'trusted' };

/** The database server's clock as just read (ms since the epoch); later checks carry it forward on the monotonic clock. */
export function serverReading(serverMs: number): ClockReading {
  return { kind: 'server', serverMs, monotonicMs: performance.now() };
}

/**
 * Reads the clock of `db`'s server (its own database, or "postgres" when that is gone), within
 * the connection deadline (DB_CONNECT_TIMEOUT_SECONDS, for the connection and for the answer). A
 * server that cannot be asked gives an `unknown` reading, never an error.
 */
export async function readServerClock(db: DbConfig): Promise<ClockReading> {
  const deadlineMs = db.connectTimeoutSeconds * 1000;
  try {
    const client = await connect(db).catch((err: unknown) => {
      if (asBackupError(err).code === 'DB_MISSING') return connect(db, 'postgres');
      throw err;
    });
    const asked = await waitAtMost(serverClockMs(client), deadlineMs);
    void client.end().catch(() => undefined);
    if (asked.state === 'done') return serverReading(asked.value);
    if (asked.state === 'failed') throw classifyPgError(asked.error, db);
    const where = `${db.host}:${db.port}`;
    throw new BackupError('DB_CONNECT', `the database server ${where} did not tell the time within ${db.connectTimeoutSeconds}s`, {
      hint: `Check that PostgreSQL on ${where} answers (DB_CONNECT_TIMEOUT_SECONDS sets how long to wait).`,
    });
  } catch (err) {
    return { kind: 'unknown', error: asBackupError(err) };
  }
}

/** Why ages cannot be trusted now: what is wrong, and what to do. */
export interface ClockDoubt {
  cause: string;
  hint: string;
}

/**
 * Why this machine's clock cannot be trusted to date `backups` (readable manifests, of `target`
 * when they are one target's) at `now`, or undefined: it differs from the database server's by more than
 * FUTURE_TOLERANCE_MS, the server could not be asked, or it reads earlier than a backup's date.
 */
export function clockDoubt(
  reading: ClockReading,
  backups: Pick<Manifest, 'id' | 'created_at'>[],
  now: Date,
  target: string | undefined,
): ClockDoubt | undefined {
  if (reading.kind === 'trusted') return undefined;
  if (reading.kind === 'unknown') {
    return {
      cause: `cannot compare this machine's clock with the database server's (${reading.error.message})`,
      hint: `${reading.error.hint ?? 'Bring the database server back.'} Or, once you have checked this machine's clock (timedatectl; is NTP on?), \`basement-backup prune --trust-clock\` applies retention by it alone.`,
    };
  }
  const skewMs = reading.serverMs + (performance.now() - reading.monotonicMs) - now.getTime();
  if (Math.abs(skewMs) > FUTURE_TOLERANCE_MS) {
    return {
      cause: `this machine's clock is ${formatAge(Math.abs(skewMs))} ${skewMs > 0 ? 'behind' : 'ahead of'} the database server's`,
      hint: "Fix the clock that is wrong (timedatectl; is NTP on?); once the clocks agree, the next backup or `prune` applies retention. If this machine's clock is right and the database server's is not, `basement-backup prune --trust-clock` applies retention by this machine's clock.",
    };
  }
  const latest = backups.filter((m) => !Number.isNaN(Date.parse(m.created_at))).sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at))[0];
  if (latest && Date.parse(latest.created_at) > now.getTime()) {
    return {
      cause: `the clock reads ${now.toISOString()}, earlier than backup ${latest.id} taken at ${latest.created_at}${target ? ` on ${target}` : ''}: the clock went backwards, or was ahead when that backup was taken`,
      hint: `Check the clock (timedatectl; is NTP on?). Retention resumes by itself once the clock passes ${latest.created_at}. If the clock is right now and that backup's date is wrong, \`basement-backup prune --trust-clock\` applies retention anyway (future-dated backups are then kept).`,
    };
  }
  return undefined;
}

/**
 * The refusal of retention on `target` when `deletes` would go by a clock in doubt (exit 26):
 * nothing is deleted, and the message says what this clock would have deleted, pins included.
 */
export function clockRefusal(doubt: ClockDoubt, target: string, deletes: Pick<Manifest, 'keep_until' | 'pin'>[], dryRun: boolean): BackupError {
  const pinned = deletes.filter((m) => keepUntilOf(m) !== null).length;
  const stake = `by this clock ${deletes.length} backup(s) would go${pinned > 0 ? `, ${pinned} of them pinned until a date it has passed` : ''}`;
  const outcome = dryRun ? `prune would refuse and delete nothing on ${target}` : `retention deleted nothing on ${target}`;
  return new BackupError('CLOCK', `${doubt.cause}; ${outcome} (${stake})`, { hint: doubt.hint });
}
