import { isKept, newestFirst, type Manifest } from '../storage/manifest';

export interface RetentionRules {
  /** Backups older than this many days may go… */
  days: number;
  /** …but never fewer than this many good backups remain. */
  minCount: number;
}

export interface RetentionDecision {
  manifest: Manifest;
  action: 'keep' | 'delete';
  reason: string;
}

/**
 * Pure: decides, for the good backups of one database, which to keep and which to delete.
 * A backup is deleted only when it is older than `days`, is not among the newest `minCount` (in
 * the order they were taken: by sequence number), and has no `keep_until` in the future (or
 * "forever"). The newest backup is never deleted. Damaged backups are not passed in: they never
 * count toward the minimum and are never deleted by retention.
 */
export function applyRetention(manifests: Manifest[], rules: RetentionRules, now: Date): RetentionDecision[] {
  const sorted = [...manifests].sort(newestFirst);
  const cutoff = now.getTime() - rules.days * 86400_000;
  const minCount = Math.max(1, rules.minCount);
  return sorted.map((manifest, index) => {
    const created = Date.parse(manifest.created_at);
    if (isKept(manifest, now)) {
      return { manifest, action: 'keep', reason: manifest.keep_until === 'forever' ? 'kept forever' : `kept until ${manifest.keep_until}` };
    }
    if (index < minCount) {
      return { manifest, action: 'keep', reason: `one of the newest ${minCount}` };
    }
    if (Number.isNaN(created) || created >= cutoff) {
      return { manifest, action: 'keep', reason: `younger than ${rules.days} days` };
    }
    return { manifest, action: 'delete', reason: `older than ${rules.days} days and ${minCount} newer backups exist` };
  });
}
