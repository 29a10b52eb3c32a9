import path from 'node:path';
import { log } from '../logger';
import type { Finding } from '../monitor/findings';
import type { Snapshot } from '../monitor/snapshot';
import type { Alerter } from '../notify/alerts';
import { readJson, writeJsonAtomic } from '../state/json-file';

/**
 * A target that cannot be listed warns only once it has stayed so for this long and this many
 * checks in a row: a network blip during one check does not page anyone.
 */
export const UNLISTED_AFTER_MS = 15 * 60_000;
export const UNLISTED_AFTER_CHECKS = 2;
/** The least time drills that have never run are given before they are overdue (see `due`). */
const FIRST_DRILL_AFTER_MS = 15 * 60_000;
/** How long a target that holds no base backup yet is given to get its first before the warning. */
const FIRST_BASE_BACKUP_AFTER_MS = 3600_000;

/** One finding seen by the checks, as kept in BACKUP_STATE_DIR/monitor-alerts.json. */
interface Seen {
  finding: Finding;
  /** The database's own name (the webhook's `database`). */
  database: string;
  /** When a check first saw it. */
  since: string;
  /** How many checks in a row saw it. */
  checks: number;
  /** Its warning reached someone (or nobody is configured to receive one): its clearing is announced. */
  alerted: boolean;
}

interface Saved {
  open: Record<string, Seen>;
}

/**
 * The early-warning alerts (issue 21): a Watch listener that compares each snapshot's findings
 * with those seen before (kept in `monitor-alerts.json`, so a restart sends nothing twice). A new
 * finding sends one `warning`; once it is gone, one `warning-cleared`. An alert that could not be
 * sent is tried again at the next check. `failing` is not sent here: the failure alert of the
 * backup itself says so (BACKUP_ALERT_AFTER_FAILURES).
 */
export class EarlyWarnings {
  readonly file: string;

  constructor(
    stateDir: string,
    private readonly alerter: Alerter,
  ) {
    this.file = path.join(stateDir, 'monitor-alerts.json');
  }

  async onSnapshot(s: Snapshot): Promise<void> {
    const saved = readJson<Saved>(this.file)?.open ?? {};
    const databases = new Map(s.observations.map((o) => [o.name, o.database]));
    const next: Record<string, Seen> = {};
    for (const f of s.findings.filter((x) => x.kind !== 'failing')) {
      const before = saved[f.key];
      const seen: Seen = {
        finding: f,
        database: databases.get(f.name) ?? f.name,
        since: before?.since ?? s.taken_at,
        checks: (before?.checks ?? 0) + 1,
        alerted: before?.alerted ?? false,
      };
      next[f.key] = seen;
      if (!seen.alerted && due(seen, s, Date.parse(s.taken_at))) seen.alerted = await this.send('warning', seen);
    }
    const unknown = unlistedNow(s);
    for (const [key, seen] of Object.entries(saved)) {
      if (next[key] || !databases.has(seen.finding.name)) continue; // still there, or its database is no longer configured
      if (unknown(seen.finding))
        next[key] = seen; // its target cannot be listed now: whether it cleared is not known
      else if (seen.alerted && !(await this.send('warning-cleared', seen))) next[key] = seen; // announced at the next check
    }
    log.debug('early warnings checked', { open: Object.keys(next).length });
    if (JSON.stringify(next) !== JSON.stringify(saved)) writeJsonAtomic(this.file, { open: next } satisfies Saved);
  }

  /** Whether it reached someone; true as well when no channel is configured (the log line is all there is). */
  private async send(kind: 'warning' | 'warning-cleared', seen: Seen): Promise<boolean> {
    const f = seen.finding;
    if (kind === 'warning') log.warn(`early warning: ${f.title}`, { key: f.key, message: f.message, fix: f.fix });
    else log.info(`early warning cleared: ${f.title}`, { key: f.key, since: seen.since });
    const sent = await this.alerter.send({
      kind,
      key: f.key,
      code: f.kind,
      database: seen.database,
      name: f.name,
      target: f.target ?? undefined,
      title: f.title,
      message: f.message,
      fix: f.fix,
      since: seen.since,
    });
    return sent || !this.alerter.reachesAnyone;
  }
}

/**
 * A warning is sent at once, except: a target that cannot be listed (see UNLISTED_AFTER_MS); a
 * target that has never held a good backup (a new installation, a target just added), given
 * the maximum age to take its first; a point-in-time archive with no base backup yet, an hour; drills that have never run (VERIFY_SCHEDULE just set),
 * given twice the drill interval, at least 15 minutes, and a target never drilled twice its own
 * (the rotation's) drill interval. Counted from when a check first saw it.
 */
function due(seen: Seen, s: Snapshot, now: number): boolean {
  const f = seen.finding;
  const waited = now - Date.parse(seen.since);
  if (f.kind === 'unlisted') return seen.checks >= UNLISTED_AFTER_CHECKS && waited >= UNLISTED_AFTER_MS;
  const o = s.observations.find((x) => x.name === f.name);
  if (!o) return true;
  if (f.kind === 'stale' && o.targets.find((t) => t.name === f.target)?.good.length === 0) return waited >= o.max_age_ms;
  // no base backup on a target yet: the daemon takes one at start (WAL_RECEIVE=on); given an hour to end
  if (f.kind === 'base-stale' && o.pitr?.windows.find((w) => w.target === f.target)?.newest_base === null) return waited >= FIRST_BASE_BACKUP_AFTER_MS;
  if (f.kind === 'drill-overdue' && o.last_drill === null) return waited >= Math.max(2 * (o.drill_interval_ms ?? 0), FIRST_DRILL_AFTER_MS);
  // a target never drilled (drills of every target are new, or the target is): the rotation's time to reach it
  if (f.kind === 'target-drill-overdue' && o.targets.find((t) => t.name === f.target)?.last_drill === null)
    return waited >= Math.max(2 * (o.target_drill_interval_ms ?? 0), FIRST_DRILL_AFTER_MS);
  return true;
}

/**
 * Whether what a finding is about cannot be seen in this snapshot: its target (or, for a finding
 * about the whole database, any of its targets) could not be listed.
 */
function unlistedNow(s: Snapshot): (f: Finding) => boolean {
  const down = s.observations.flatMap((o) => o.targets.filter((t) => t.error !== null).map((t) => ({ name: o.name, target: t.name })));
  return (f) => f.kind !== 'unlisted' && down.some((d) => d.name === f.name && (f.target === null || f.target === d.target));
}
