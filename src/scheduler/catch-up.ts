import { isFutureDated, newestFirst, type Manifest } from '../repository/manifest';

/** What the daemon saw on one storage target at start, for the catch-up decisions. */
export interface TargetView {
  name: string;
  /** Good backups, newest first; undefined when the target could not be listed (`problem` says why). */
  good: Manifest[] | undefined;
  problem?: string | undefined;
  /** When the newest restore drill recorded on this target ended (whatever its verdict). */
  lastDrillAt: string | undefined;
}

/** Whether to run now, and the log line that says why. */
export interface CatchUp {
  run: boolean;
  why: string;
  /** A target could not be listed: worth a warning. */
  warn?: boolean;
}

/**
 * Pure: does the backup run due at `due` (the last scheduled time before the start) need a
 * catch-up run? Not when the newest good backup of some target was taken at or after `due`
 * (sync copies it to the others); a backup dated in the future says nothing about whether the
 * run happened. When no target can be listed, the backup runs, and says why it fails.
 */
export function backupCatchUp(views: TargetView[], due: Date, now: Date): CatchUp {
  const listed = views.filter((v) => v.good !== undefined);
  const unlisted = views.filter((v) => v.good === undefined);
  if (listed.length === 0) return { run: true, warn: true, why: `catch-up: cannot list the backups on ${problems(unlisted)}; backing up now` };
  for (const v of listed) {
    const m = v.good![0];
    if (m && !isFutureDated(m, now) && Date.parse(m.created_at) >= due.getTime()) {
      return { run: false, why: `the run due at ${due.toISOString()} has a backup (${m.id} on ${v.name}); nothing to catch up` };
    }
  }
  const newest = listed.flatMap((v) => v.good!.slice(0, 1)).sort(newestFirst)[0];
  const future = newest !== undefined && isFutureDated(newest, now);
  const also = unlisted.length > 0 ? `; cannot list ${problems(unlisted)}` : '';
  return {
    run: true,
    warn: unlisted.length > 0,
    why: `catch-up: the run due at ${due.toISOString()} has no backup (newest: ${newest?.created_at ?? 'none'}${future ? ', dated in the future' : ''})${also}; backing up now`,
  };
}

/**
 * Pure: was the restore drill due at `due` (the last drill slot before the start) missed while
 * the daemon was down? It was when no drill recorded on any target ended at or after `due`,
 * although the first target (where drills run) held a good backup taken before `due`, which
 * the drill would have restored. When the first target cannot be listed nothing can be told,
 * and the next scheduled drill is left to run.
 */
export function drillCatchUp(views: TargetView[], due: Date): CatchUp {
  const at = due.toISOString();
  const first = views[0];
  if (!first?.good)
    return { run: false, warn: true, why: `restore drill: cannot tell whether the drill due at ${at} ran: ${first ? problems([first]) : 'no target'}` };
  const last = views.reduce<string | undefined>((max, v) => (v.lastDrillAt && (!max || v.lastDrillAt > max) ? v.lastDrillAt : max), undefined);
  if (last && Date.parse(last) >= due.getTime()) return { run: false, why: `restore drill: the one due at ${at} ran (it ended ${last}); nothing to catch up` };
  if (!first.good.some((m) => Date.parse(m.created_at) < due.getTime())) {
    return { run: false, why: `restore drill: ${first.name} held no backup to drill at ${at}; nothing to catch up` };
  }
  return { run: true, why: `catch-up: the restore drill due at ${at} did not run (last drill: ${last ?? 'never'}); drilling now` };
}

function problems(views: TargetView[]): string {
  return views.map((v) => `${v.name} (${v.problem ?? 'no answer'})`).join(', ');
}
