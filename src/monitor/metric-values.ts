import { VERSION } from '../version';
import { RUN_KINDS, WARNING_KINDS } from './metric-list';
import type { Observation, TargetObservation } from './observe';
import type { PitrObservation } from './observe-pitr';
import type { Snapshot } from './snapshot';

/** One value of one metric of METRICS, its name without the `basement_backup_` prefix. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const seconds = (iso: string) => Date.parse(iso) / 1000;

/** The samples of a snapshot (or of the daemon before its first check): pure, no I/O. */
export function samplesOf(snapshot: Snapshot | undefined): Sample[] {
  const out: Sample[] = [];
  const add = (name: string, value: number, labels: Record<string, string> = {}) => out.push({ name, labels, value });
  add('build_info', 1, { version: snapshot?.daemon.version ?? VERSION });
  add('up', snapshot ? 1 : 0);
  if (!snapshot) return out;
  add('start_time_seconds', seconds(snapshot.daemon.started_at));
  add('last_check_timestamp_seconds', seconds(snapshot.taken_at));
  for (const o of snapshot.observations) {
    databaseSamples(o, snapshot, add);
    for (const t of o.targets) targetSamples(t, (name, value) => add(name, value, { database: o.name, target: t.name }));
    if (o.pitr) pitrSamples(o.name, o.pitr, add);
  }
  return out;
}

type Add = (name: string, value: number, labels?: Record<string, string>) => void;

function databaseSamples(o: Observation, snapshot: Snapshot, add: Add): void {
  const database = o.name;
  const db = (name: string, value: number) => add(name, value, { database });
  const a = o.last_attempt;
  if (a) {
    db('last_attempt_timestamp_seconds', seconds(a.finished_at));
    db('last_attempt_success', a.ok ? 1 : 0);
    db('last_attempt_duration_seconds', (Date.parse(a.finished_at) - Date.parse(a.started_at)) / 1000);
  }
  db('failures_total', o.failures_total);
  db('failure_streak', o.failure_streak);
  db('running', o.running ? 1 : 0);
  db('max_age_seconds', o.max_age_ms / 1000);
  const next: Record<(typeof RUN_KINDS)[number], string | null> = { backup: o.next_backup_at, drill: o.next_drill_at };
  for (const kind of RUN_KINDS) {
    const at = next[kind];
    if (at !== null) add('next_run_timestamp_seconds', seconds(at), { database, kind });
  }
  const d = o.last_drill;
  if (d) {
    db('last_drill_timestamp_seconds', seconds(d.verified_at));
    db('last_drill_success', d.ok ? 1 : 0);
    if (d.restore_ms !== null) db('last_drill_restore_seconds', d.restore_ms / 1000);
  }
  const mine = snapshot.findings.filter((f) => f.name === database);
  for (const kind of WARNING_KINDS) add('warning', mine.some((f) => f.kind === kind) ? 1 : 0, { database, kind });
  db('healthy', mine.some((f) => f.health) ? 0 : 1);
}

function targetSamples(t: TargetObservation, add: (name: string, value: number) => void): void {
  add('target_up', t.error === null ? 1 : 0);
  if (t.error !== null) return;
  const newest = t.good[0];
  if (newest) {
    add('last_success_timestamp_seconds', seconds(newest.created_at));
    add('last_success_duration_seconds', newest.duration_ms / 1000);
    add('last_success_size_bytes', newest.size_bytes);
    add('last_success_size_anomaly', newest.anomaly ? 1 : 0);
  }
  if (t.good_count !== null) add('good_backups', t.good_count);
  if (t.damaged !== null) add('damaged_backups', t.damaged);
  if (t.stored_bytes !== null) add('stored_bytes', t.stored_bytes);
  const d = t.last_drill;
  if (d) {
    add('target_drill_timestamp_seconds', seconds(d.verified_at));
    add('target_drill_success', d.ok ? 1 : 0);
    if (d.restore_ms !== null) add('target_drill_restore_seconds', d.restore_ms / 1000);
  }
  if (t.disk) {
    add('disk_free_bytes', t.disk.free_bytes);
    if (t.disk.days_to_full !== null) add('disk_seconds_until_full', t.disk.days_to_full * 86400);
  }
}

/** The archiving of the entry whose WAL a receiver archives, and each target's recovery window. */
function pitrSamples(database: string, p: PitrObservation, add: Add): void {
  const a = p.archiving;
  if (a) {
    const db = (name: string, value: number) => add(name, value, { database });
    db('wal_receiver_up', a.receiver.running && a.receiver.streaming ? 1 : 0);
    db('wal_receiver_failure_streak', a.receiver.failures_in_a_row);
    if (a.last_archived?.at) db('wal_last_archived_timestamp_seconds', seconds(a.last_archived.at));
    db('wal_queue_files', a.queue.files);
    db('wal_queue_bytes', a.queue.bytes);
    db('wal_queue_oldest_seconds', a.queue.oldest_seconds);
    if (a.server?.slot) db('wal_slot_retained_bytes', a.server.slot.retained_bytes);
    if (a.lag_seconds !== null) db('wal_lag_seconds', a.lag_seconds);
  }
  for (const w of p.windows) {
    if (w.error !== null) continue;
    const t = (name: string, value: number) => add(name, value, { database, target: w.target });
    if (w.earliest && w.latest) {
      t('recovery_window_start_timestamp_seconds', seconds(w.earliest));
      t('recovery_window_end_timestamp_seconds', seconds(w.latest));
    }
    t('recovery_window_gaps', w.gaps.length);
    if (w.newest_base_at) t('base_backup_last_good_timestamp_seconds', seconds(w.newest_base_at));
  }
}
