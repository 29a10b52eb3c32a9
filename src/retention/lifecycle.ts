import type { RetentionRules } from '../config/types';
import { longestKeepMs } from './lock';

const DAY = 86400_000;
/** Days past the longest rule: a backup is never expired by the bucket while retention still keeps it. */
export const LIFECYCLE_MARGIN_DAYS = 1;
/** How long a version stays once hidden or replaced: the time to notice an attack and recover it by its version. */
export const NONCURRENT_DAYS = 30;
/** An upload left unfinished (a killed backup) is aborted by the bucket after this. */
export const ABORT_UPLOAD_DAYS = 7;

/** The lifecycle configuration of an append-only target, as PutBucketLifecycleConfiguration takes it. */
export interface LifecycleConfiguration {
  Rules: {
    ID: string;
    Status: 'Enabled';
    Filter: { Prefix: string };
    Expiration: { Days: number };
    NoncurrentVersionExpiration: { NoncurrentDays: number };
    AbortIncompleteMultipartUpload: { DaysAfterInitiation: number };
  }[];
}

/**
 * Pure: the lifecycle rule that stands for `rules` on a target that never deletes (`delete:
 * false`). A rule expires an object by its age alone, so it must keep every object as long as any
 * rule could keep its backup: the days rule or the longest GFS period (longestKeepMs), plus a
 * day's margin. What it cannot express is in `limits`.
 */
export function lifecycleFor(target: string, prefix: string, rules: RetentionRules): { days: number; configuration: LifecycleConfiguration; limits: string[] } {
  const days = Math.ceil(longestKeepMs(rules) / DAY) + LIFECYCLE_MARGIN_DAYS;
  const configuration: LifecycleConfiguration = {
    Rules: [
      {
        ID: `basement-backup ${target}`,
        Status: 'Enabled',
        Filter: { Prefix: prefix },
        Expiration: { Days: days },
        NoncurrentVersionExpiration: { NoncurrentDays: NONCURRENT_DAYS },
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: ABORT_UPLOAD_DAYS },
      },
    ],
  };
  const gfs = (['daily', 'weekly', 'monthly', 'yearly'] as const).some((p) => (rules[p] ?? 0) > 0);
  const limits = [
    `a lifecycle rule goes by each object's age alone: every backup is kept ${days} days (the longest any rule keeps one, plus ${LIFECYCLE_MARGIN_DAYS})${gfs ? ', so GFS keeps every backup, not one per period, for the longest period' : ''}`,
    `the minimum count (${rules.minCount}) cannot be expressed: if backups stop for ${days} days, the bucket expires the last ones too (the max-age alert says so long before)`,
    `a pin or --keep cannot be expressed: a pinned backup expires with the others after ${days} days; keep it longer on another target`,
    `a version hidden or replaced (by the rule, or by a stolen key) stays ${NONCURRENT_DAYS} more days, to be recovered by its version; unfinished uploads go after ${ABORT_UPLOAD_DAYS}`,
  ];
  return { days, configuration, limits };
}
