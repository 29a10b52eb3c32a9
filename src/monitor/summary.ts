import { formatAge, formatBytes } from '../util/format';
import type { BackupPoint, Observation } from './observe';
import type { Snapshot } from './snapshot';

/**
 * The summary mail (BACKUP_SUMMARY_SCHEDULE, issue 21 section 5): per database, what was taken
 * and drilled since `since` (the previous summary), sizes and their trend, the slowest restore,
 * free space and what is wrong now, so that silence is never the only sign that all is well.
 * Pure: built from a snapshot. What retention pruned is not in it: no record of deletions is kept.
 */
export function composeSummary(s: Snapshot, since: Date, host: string): { subject: string; text: string } {
  const at = new Date(s.taken_at);
  const open = s.findings.length;
  const lines = [`basement-backup on ${host}: from ${since.toISOString()} to ${at.toISOString()} (${formatAge(at.getTime() - since.getTime())}).`, ''];
  for (const o of s.observations) lines.push(...databaseLines(o, s, since), '');
  lines.push(open === 0 ? 'No open warnings.' : `${open} open warning(s): \`basement-backup status\` and the alert mails say more.`);
  const taken = s.observations.reduce((n, o) => n + takenSince(o, since, s).length, 0);
  const state = open === 0 ? 'all well' : `${open} warning(s) open`;
  return {
    subject: `[basement-backup] SUMMARY: ${taken} backup(s) since ${since.toISOString().slice(0, 10)}, ${state} on ${host}`,
    text: lines.join('\n') + '\n',
  };
}

/**
 * The good backups completed since `since` (the previous summary's snapshot), on any target (each
 * once), newest first. By completion, not start: a backup running across a summary is counted by
 * the next one, not by neither.
 */
function takenSince(o: Observation, since: Date, s: Snapshot): BackupPoint[] {
  // up to the snapshot's time: one that completed while the targets were listed is the next summary's
  const until = Date.parse(s.taken_at);
  const byId = new Map<string, BackupPoint>();
  for (const t of o.targets)
    for (const b of t.good) if (Date.parse(b.finished_at) > since.getTime() && Date.parse(b.finished_at) <= until && !byId.has(b.id)) byId.set(b.id, b);
  return [...byId.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
}

function databaseLines(o: Observation, s: Snapshot, since: Date): string[] {
  const title = o.name === o.database ? `Database ${o.database}` : `${o.name} (database ${o.database})`;
  const taken = takenSince(o, since, s);
  const lines = [`${title}`, `  Backups taken: ${taken.length} (schedule ${o.schedule}; next ${o.next_backup_at}).`];
  if (o.last_failure && Date.parse(o.last_failure.at) >= since.getTime()) {
    const streak = o.failure_streak > 0 ? `, ${o.failure_streak} in a row, not yet recovered` : ', recovered since';
    lines.push(`  Last failure: ${o.last_failure.at} ${o.last_failure.code}${streak}.`);
  }
  lines.push(...sizeLines(o, taken), ...drillLines(o, since));
  for (const t of o.targets) {
    if (t.error !== null) {
      lines.push(`  Target ${t.name}: cannot be listed: ${t.error}`);
      continue;
    }
    const free = t.disk
      ? `; ${formatBytes(t.disk.free_bytes)} free${t.disk.days_to_full === null ? '' : `, full in about ${Math.floor(t.disk.days_to_full)} days at the present growth`}`
      : '';
    lines.push(`  Target ${t.name}: ${t.good_count} good backup(s), ${formatBytes(t.stored_bytes ?? 0)} stored${free} (${t.location}).`);
  }
  for (const f of s.findings.filter((x) => x.name === o.name)) lines.push(`  OPEN: ${f.title}. ${f.message}`);
  return lines;
}

/** The newest size, its change over the period, and any unusual size. */
function sizeLines(o: Observation, taken: BackupPoint[]): string[] {
  const all = o.targets.flatMap((t) => t.good).sort((a, b) => b.created_at.localeCompare(a.created_at));
  const newest = all[0];
  if (!newest) return ['  Size: no good backup.'];
  // the first of the period compared with the last before it: the trend over the period
  const before = all.find((b) => !taken.some((x) => x.id === b.id));
  const first = taken[taken.length - 1];
  let trend = '';
  if (first && before && before.size_bytes > 0) {
    const pct = ((newest.size_bytes - before.size_bytes) / before.size_bytes) * 100;
    trend = `, ${pct >= 0 ? '+' : ''}${pct.toFixed(1)} % since ${before.created_at.slice(0, 10)} (${formatBytes(before.size_bytes)})`;
  }
  const lines = [`  Size: newest ${formatBytes(newest.size_bytes)}${trend}.`];
  for (const b of taken.filter((x) => x.anomaly))
    lines.push(`  Unusual size: ${b.id} is ${b.anomaly!.ratio.toFixed(2)} times the median (${formatBytes(b.anomaly!.median_bytes)}); kept.`);
  return lines;
}

/** Drills of the period (on the good backups) and the slowest restore among them; the last drill when none ran. */
function drillLines(o: Observation, since: Date): string[] {
  if (o.verify_schedule === null && o.last_drill === null) return ['  Restore drills: off (VERIFY_SCHEDULE).'];
  const seen = new Map<string, NonNullable<BackupPoint['drill']>>();
  for (const t of o.targets) for (const b of t.good) if (b.drill && Date.parse(b.drill.verified_at) >= since.getTime()) seen.set(`${t.name}:${b.id}`, b.drill);
  const drills = [...seen.values()];
  const passed = drills.filter((d) => d.ok).length;
  const last = o.last_drill;
  const lastFailed = last && !last.ok && Date.parse(last.verified_at) >= since.getTime();
  if (drills.length === 0 && last === null) return [`  Restore drills: none has run yet (VERIFY_SCHEDULE ${o.verify_schedule ?? 'off'}).`];
  const lines = [`  Restore drills: ${passed} passed${lastFailed ? `; the last FAILED (${last.verified_at}: ${last.error ?? 'see verify'})` : ''}.`];
  const slowest = drills.reduce<number | null>((m, d) => (d.restore_ms !== null && (m === null || d.restore_ms > m) ? d.restore_ms : m), null);
  if (slowest !== null) lines.push(`  Slowest restore: ${formatAge(slowest)}.`);
  else if (last?.restore_ms != null) lines.push(`  No drill in the period; the last restored in ${formatAge(last.restore_ms)} (${last.verified_at}).`);
  return lines;
}
