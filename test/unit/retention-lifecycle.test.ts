import { describe, expect, it } from 'vitest';
import { lifecycleFor } from '../../src/retention/lifecycle';

const BASE = { days: 7, minCount: 7 };

describe('lifecycleFor: the lifecycle rule of a delete: false target', () => {
  it('expires after the longest any rule keeps a backup, plus a day, under the prefix', () => {
    expect(lifecycleFor('s3', 'p/', BASE).days).toBe(8);
    // 12 months at 31 days and an hour: 373 days started, plus one
    expect(lifecycleFor('s3', 'p/', { ...BASE, monthly: 12 }).days).toBe(374);
    expect(lifecycleFor('s3', 'p/', { ...BASE, weekly: 4, yearly: 2 }).days).toBe(734);
    // a days rule longer than the periods wins
    expect(lifecycleFor('s3', 'p/', { days: 90, minCount: 1, weekly: 4 }).days).toBe(91);
    const { configuration } = lifecycleFor('offsite', 'backups/', { ...BASE, weekly: 4 });
    expect(configuration).toEqual({
      Rules: [
        {
          ID: 'basement-backup offsite',
          Status: 'Enabled',
          Filter: { Prefix: 'backups/' },
          Expiration: { Days: 30 },
          NoncurrentVersionExpiration: { NoncurrentDays: 30 },
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
        },
      ],
    });
  });

  it('says what it cannot express: GFS per period, the minimum count, pins', () => {
    const limits = lifecycleFor('s3', '', { ...BASE, monthly: 3 }).limits.join('\n');
    expect(limits).toContain('GFS keeps every backup, not one per period');
    expect(limits).toContain('the minimum count (7) cannot be expressed');
    expect(limits).toContain('a pin or --keep cannot be expressed');
    expect(lifecycleFor('s3', '', BASE).limits.join('\n')).not.toContain('GFS');
  });
});
