import fs from 'node:fs';
import path from 'node:path';
import { log } from '../logger';
import { writeJsonAtomic } from './json-file';
import { pidAlive } from '../util/owner';

/** What the daemon and the CLI remember between runs, per database. */
export interface DbState {
  last_failure: { at: string; code: string; message: string } | null;
  /** Failed attempts since the last success. */
  failure_streak: number;
  /** Failed attempts ever (never reset: the metrics' counter, which a restart must not reset). */
  failures_total?: number;
  /** When the last failure alert for this streak went out. */
  last_alert_at: string | null;
  /** Sequence number of the last good backup (see Manifest.seq), so numbers keep rising when no target can be listed. */
  last_seq?: number;
  /** Damaged backups an alert has already gone out for (one mail per damaged backup). */
  damaged_alerted?: string[];
  /** How the last backup attempt ended (a run refused by the lock is not an attempt): what the metrics and the status page show. */
  last_attempt?: { started_at: string; finished_at: string; ok: boolean; code: string | null };
}

export const EMPTY_STATE: DbState = {
  last_failure: null,
  failure_streak: 0,
  last_alert_at: null,
};

/** A small JSON file per database in the state directory, replaced atomically. */
export class StateStore {
  /** `keyOf`: the name a database's state is kept under (its configuration entry's name). */
  constructor(
    readonly dir: string,
    private readonly keyOf: (database: string) => string = (d) => d,
  ) {}

  private file(database: string): string {
    return path.join(this.dir, `state-${encodeURIComponent(this.keyOf(database))}.json`);
  }

  read(database: string): DbState {
    try {
      return { ...EMPTY_STATE, ...(JSON.parse(fs.readFileSync(this.file(database), 'utf8')) as Partial<DbState>) };
    } catch {
      return { ...EMPTY_STATE };
    }
  }

  /** Replaces the state atomically (temp file, fsync, rename). */
  write(database: string, state: DbState): void {
    writeJsonAtomic(this.file(database), state);
    this.removeLeftovers();
  }

  /** Removes the temporary files of writes whose process was killed (`state-….json.tmp-<pid>`, `monitor-….json.tmp-<pid>`, the pid gone). */
  removeLeftovers(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    for (const n of names) {
      const pid = /^(?:state|monitor)-.*\.json\.tmp-(\d+)$/.exec(n)?.[1];
      if (pid !== undefined && !pidAlive(Number(pid))) fs.rmSync(path.join(this.dir, n), { force: true });
    }
  }

  /**
   * Applies `fn` and saves the result; returns it even when it cannot be saved (a full disk must
   * not stop the alert that says so), logging why.
   */
  update(database: string, fn: (s: DbState) => DbState): DbState {
    const next = fn(this.read(database));
    try {
      this.write(database, next);
    } catch (err) {
      log.error('cannot save the backup state', { dir: this.dir, error: (err as Error).message });
    }
    return next;
  }
}
