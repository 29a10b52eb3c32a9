import type { App } from '../app';
import type { RetentionRules } from '../config/types';
import { applyRetention } from '../retention/policy';
import { isFutureDated } from '../repository/manifest';
import { isGood, type ListedBackup, type Listing, type Repository } from '../repository/repository';
import { sizeAnomalies, type SizeAnomaly } from '../repository/size-history';
import type { TemporaryObject } from '../storage/types';
import { drillsByBackup, type DrillRecord } from './drill-records';

export interface ListOptions {
  /** The target to list (the first when undefined). */
  target?: string;
  /** Also the objects no manifest owns (ORPHAN rows) and temporary objects (TEMPORARY rows). */
  all?: boolean;
  now?: Date;
}

/** `list --json`: the backups of the configured database on one target, newest first, as rows for scripts. */
export async function listRows(app: App, opts: ListOptions = {}): Promise<object[]> {
  const target = app.target(opts.target);
  const now = opts.now ?? new Date();
  const listing = await target.repo.scan(app.database.db.database);
  const retention = retentionOf(listing.backups, target.retention, now, app.config.timezone);
  const drills = await drillsByBackup(app, target.name, listing.backups);
  const rows = rowsOf(target.repo, listing, opts.all === true, now, retention, anomaliesOf(listing.backups, app.config.monitor.sizeAlertRatio), drills);
  if (!opts.all) return rows;
  return [...rows, ...(await target.repo.temporaries(app.database.db.database)).map((t) => temporaryRow(target.repo, t))];
}

/** A temporary object (`list --all`): being written (`in_use`), or left by an interrupted write, which the next backup, sync, reencrypt or prune removes. */
export function temporaryRow(repo: Repository, t: TemporaryObject): { file: string; size_bytes: number | null; state: 'TEMPORARY'; in_use: boolean } {
  return { file: repo.localPath(t.name) ?? t.name, size_bytes: t.size ?? null, state: 'TEMPORARY', in_use: t.inUse };
}

/**
 * What the target's retention would do with each good backup now: the rules that keep it
 * ("daily 3/7 (2026-11-30), min count 1/7"), or "goes at the next prune: …" and why.
 */
export function retentionOf(backups: ListedBackup[], rules: RetentionRules, now: Date, timeZone: string): Map<string, string> {
  const decisions = applyRetention(
    backups.filter(isGood).map((b) => b.manifest),
    rules,
    now,
    timeZone,
  );
  return new Map(decisions.map((d) => [d.manifest.id, d.action === 'keep' ? d.reason : `goes at the next prune: ${d.reason}`]));
}

/** The good backups whose size is far from the usual (BACKUP_SIZE_ALERT_RATIO), by id: kept, shown as such. */
export function anomaliesOf(backups: ListedBackup[], ratio: number): Map<string, SizeAnomaly> {
  return sizeAnomalies(
    backups.filter(isGood).map((b) => b.manifest),
    ratio,
  );
}

/** Each manifest with its state and the last drill flat, then the orphans when `all`. */
function rowsOf(
  repo: Repository,
  { backups, orphans }: Listing,
  all: boolean,
  now: Date,
  retention: Map<string, string>,
  anomalies: Map<string, SizeAnomaly>,
  drills: Map<string, DrillRecord[]>,
): object[] {
  return [
    ...backups.map((b) => ({
      ...(b.manifest ?? { id: b.id }),
      file: b.manifest ? (repo.localPath(b.manifest.file) ?? b.manifest.file) : null,
      state: b.damage === undefined ? 'ok' : 'DAMAGED',
      damage: b.damage ?? null,
      future_dated: b.manifest ? isFutureDated(b.manifest, now) : false,
      // what retention does with it now (null for a damaged backup: never counted, never deleted)
      retention: retention.get(b.id) ?? null,
      // the last restore drill, also flat for scripts (the full record is in "verification")
      verified_at: b.manifest?.verification?.verified_at ?? null,
      verify_ok: b.manifest?.verification?.ok ?? null,
      restore_ms: b.manifest?.verification?.restore_ms ?? null,
      // the drills recorded of it on each target (each read from that target alone)
      drills: drills.get(b.id) ?? [],
      // far from the usual size (kept): small or large, the median it is compared with, the ratio
      size_anomaly: sizeField(anomalies.get(b.id)),
    })),
    ...(all ? orphans.map((o) => ({ file: repo.localPath(o.name) ?? o.name, size_bytes: o.size, state: 'ORPHAN' })) : []),
  ];
}

/** What `list --json` and `status --json` say of a size anomaly. */
export function sizeField(a: SizeAnomaly | undefined): { kind: 'small' | 'large'; median_bytes: number; ratio: number } | null {
  return a ? { kind: a.kind, median_bytes: a.median_bytes, ratio: Math.round(a.ratio * 1000) / 1000 } : null;
}
