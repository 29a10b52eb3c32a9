import type { App } from '../app';
import type { ListedBackup } from '../repository/repository';
import { listEveryTarget } from './every-target';

/** A restore drill of one backup, as recorded on the target it was read from. */
export interface DrillRecord {
  target: string;
  verified_at: string;
  ok: boolean;
  restore_ms: number | null;
  /** Set when only the stored bytes were checked (an encrypted backup, no identity where it ran). */
  content: string | null;
}

/** How long `list` waits for another target's records before it shows the backups without them. */
const OTHER_TARGETS_DEADLINE_MS = 30_000;

/**
 * Per backup id, the drills recorded of it on each target (the shown target's from `shown`, the
 * others listed at once, each within a deadline; one that cannot be listed adds nothing). A
 * checksum-only check is no drill. With one target, no listing: its own records only.
 */
export async function drillsByBackup(app: App, shownTarget: string, shown: ListedBackup[]): Promise<Map<string, DrillRecord[]>> {
  const out = new Map<string, DrillRecord[]>();
  const add = (target: string, backups: ListedBackup[]) => {
    for (const b of backups) {
      const v = b.manifest?.verification;
      if (!v || (v.kind === 'checksum' && !v.content)) continue;
      const record = { target, verified_at: v.verified_at, ok: v.ok, restore_ms: v.restore_ms, content: v.content ?? null };
      out.set(b.id, [...(out.get(b.id) ?? []), record]);
    }
  };
  const listings = app.targets.length === 1 ? [] : await listEveryTarget(app, app.database.db.database, { deadlineMs: OTHER_TARGETS_DEADLINE_MS });
  for (const t of app.targets) {
    if (t.name === shownTarget) {
      add(t.name, shown);
      continue;
    }
    const l = listings.find((x) => x.target.name === t.name);
    if (l?.state === 'done') add(t.name, l.value);
  }
  return out;
}
