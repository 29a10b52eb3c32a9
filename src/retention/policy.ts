import type { RetentionRules } from '../config/types';
import { isKept, keepUntilOf, newestFirst, type Manifest } from '../repository/manifest';
import { bucketOf, PERIODS, type Period } from './calendar';

/** Why a backup is kept: one entry per rule that keeps it. */
export interface KeptBy {
  rule: 'pinned' | 'min-count' | 'days' | Period;
  /** As shown in `list` and `prune --dry-run`: "daily 3/7 (2026-11-30)", "pinned until 2027-01-31", "min count 1/7". */
  text: string;
}

/** What retention reads of a backup: a dump's manifest, or a base backup's record seen as one. */
export type Retained = Pick<Manifest, 'id' | 'created_at' | 'seq' | 'keep_until' | 'pin'>;

export interface RetentionDecision<T extends Retained = Manifest> {
  manifest: T;
  action: 'keep' | 'delete';
  /** Every rule that keeps it (empty when it goes). */
  keptBy: KeptBy[];
  /** The rules that keep it, joined; or why it goes. */
  reason: string;
}

/** The rules as one line, for `config check`, the pre-flight summary and the README's examples. */
export function describeRules(rules: RetentionRules): string {
  const gfs = PERIODS.filter((p) => (rules[p] ?? 0) > 0).map((p) => `${p} ${rules[p]}`);
  return [`${rules.days} days`, `at least ${rules.minCount}`, ...gfs].join(', ');
}

/**
 * Pure: decides, for the good backups of one database on one target, which to keep and which to
 * delete. A backup is kept when any rule keeps it:
 * - pinned: its pin (or the `--keep` it was taken with) lasts beyond `now`, or forever;
 * - min count: it is among the newest `minCount` unpinned backups (in the order they were taken:
 *   by sequence number; at least 1, so the newest is never deleted);
 * - days: it was taken less than `days` × 24 h before `now`;
 * - daily/weekly/monthly/yearly N: it is the newest unpinned backup of its calendar day / ISO week
 *   / month / year in `timeZone`, and that is one of the newest N such periods that have a backup.
 * Pinned backups stand apart: they neither take a place among the newest nor stand for a period,
 * so pinning a backup never lets another go. Damaged backups are not passed in: they never count
 * and are never deleted by retention. Returns the decisions newest first.
 */
export function applyRetention<T extends Retained = Manifest>(manifests: T[], rules: RetentionRules, now: Date, timeZone = 'UTC'): RetentionDecision<T>[] {
  const sorted = [...manifests].sort(newestFirst);
  const cutoff = now.getTime() - rules.days * 86400_000;
  const minCount = Math.max(1, rules.minCount);
  const kept = new Map<string, KeptBy[]>(sorted.map((m) => [m.id, []]));
  const add = (m: T, k: KeptBy) => kept.get(m.id)!.push(k);

  const rotating: T[] = [];
  for (const m of sorted) {
    if (isKept(m, now)) {
      const until = keepUntilOf(m);
      const note = m.pin?.note ? ` (${m.pin.note})` : '';
      add(m, { rule: 'pinned', text: until === 'forever' ? `pinned forever${note}` : `pinned until ${until}${note}` });
    } else {
      rotating.push(m);
    }
  }
  rotating.slice(0, minCount).forEach((m, i) => add(m, { rule: 'min-count', text: `min count ${i + 1}/${minCount}` }));
  for (const m of rotating) {
    const created = Date.parse(m.created_at);
    // a date that cannot be read cannot be shown to be old
    if (Number.isNaN(created) || created >= cutoff) add(m, { rule: 'days', text: `younger than ${rules.days} days` });
  }
  for (const period of PERIODS) {
    const n = rules[period] ?? 0;
    if (n <= 0) continue;
    const seen = new Set<string>();
    for (const m of rotating) {
      const created = Date.parse(m.created_at);
      if (Number.isNaN(created)) continue;
      const bucket = bucketOf(period, created, timeZone);
      if (seen.has(bucket)) continue; // an older backup of a period already kept
      seen.add(bucket);
      add(m, { rule: period, text: `${period} ${seen.size}/${n} (${bucket})` });
      if (seen.size >= n) break;
    }
  }

  return sorted.map((manifest) => {
    const keptBy = kept.get(manifest.id)!;
    if (keptBy.length > 0) return { manifest, action: 'keep', keptBy, reason: keptBy.map((k) => k.text).join(', ') };
    const why = [`older than ${rules.days} days`, `${minCount} newer backups exist`];
    const periods = PERIODS.filter((p) => (rules[p] ?? 0) > 0).map(periodNoun);
    if (periods.length > 0) why.push(`not the newest of a kept ${orList(periods)}`);
    return { manifest, action: 'delete', keptBy, reason: why.join(', ') };
  });
}

/** "day", "day or week", "day, week or month". */
function orList(words: string[]): string {
  return words.length <= 1 ? (words[0] ?? '') : `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`;
}

function periodNoun(p: Period): string {
  return { daily: 'day', weekly: 'week', monthly: 'month', yearly: 'year' }[p];
}
