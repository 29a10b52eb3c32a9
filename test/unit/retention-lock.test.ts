import { describe, expect, it } from 'vitest';
import type { RetentionRules } from '../../src/config/types';
import { FOREVER_LOCK_DAYS, lockUntil, MIN_LOCK_MS } from '../../src/retention/lock';
import { applyRetention } from '../../src/retention/policy';
import { backupId, dataFileName, type Manifest } from '../../src/repository/manifest';

const HOUR = 3600_000;
const DAY = 24 * HOUR;
const T0 = Date.parse('2026-03-10T12:00:00.000Z');
const rules = (r: Partial<RetentionRules>): RetentionRules => ({ days: 7, minCount: 7, ...r });

function manifest(taken: number): Manifest {
  const id = backupId('db', new Date(taken));
  const at = new Date(taken).toISOString();
  return { manifest_version: 1, id, file: dataFileName(id, 'custom'), database: 'db', created_at: at, finished_at: at, keep_until: null } as Manifest;
}

describe('lockUntil', () => {
  it('covers the days rule from the time the backup was taken', () => {
    expect(lockUntil(T0, rules({ days: 7 }), null, new Date(T0 + 60_000)).getTime()).toBe(T0 + 7 * DAY);
  });

  it('covers the longest GFS period at its longest, plus an hour for a day clocks turn back', () => {
    const now = new Date(T0);
    expect(lockUntil(T0, rules({ days: 1, daily: 10 }), null, now).getTime()).toBe(T0 + 10 * DAY + HOUR);
    expect(lockUntil(T0, rules({ days: 1, daily: 10, weekly: 4 }), null, now).getTime()).toBe(T0 + 28 * DAY + HOUR);
    expect(lockUntil(T0, rules({ days: 1, monthly: 6 }), null, now).getTime()).toBe(T0 + 186 * DAY + HOUR);
    expect(lockUntil(T0, rules({ days: 1, monthly: 6, yearly: 2 }), null, now).getTime()).toBe(T0 + 732 * DAY + HOUR);
    expect(lockUntil(T0, rules({ days: 400, monthly: 6 }), null, now).getTime()).toBe(T0 + 400 * DAY);
  });

  it('a pin or --keep lengthens it to its date; forever (or a date that cannot be read) to 100 years; never shortens it', () => {
    const now = new Date(T0);
    expect(lockUntil(T0, rules({}), '2027-01-31T00:00:00.000Z', now).toISOString()).toBe('2027-01-31T00:00:00.000Z');
    expect(lockUntil(T0, rules({}), new Date(T0 + DAY).toISOString(), now).getTime()).toBe(T0 + 7 * DAY);
    expect(lockUntil(T0, rules({}), 'forever', now).getTime()).toBe(T0 + FOREVER_LOCK_DAYS * DAY);
    expect(lockUntil(T0, rules({}), 'soon', now).getTime()).toBe(T0 + FOREVER_LOCK_DAYS * DAY);
  });

  it("an object written after its backup's span (a sync of an old backup, a late check) is locked at least a day", () => {
    const now = new Date(T0 + 30 * DAY);
    expect(lockUntil(T0, rules({ days: 7 }), null, now).getTime()).toBe(now.getTime() + MIN_LOCK_MS);
    expect(lockUntil(NaN, rules({ days: 7 }), null, now).getTime()).toBe(now.getTime() + 7 * DAY);
  });

  it('testSeconds replaces the rules (tests only), a pin still lengthens it', () => {
    const now = new Date(T0 + 5 * DAY);
    expect(lockUntil(T0, rules({ days: 30 }), null, now, 20).getTime()).toBe(now.getTime() + 20_000);
    expect(lockUntil(T0, rules({ days: 30 }), '2027-01-31T00:00:00.000Z', now, 20).toISOString()).toBe('2027-01-31T00:00:00.000Z');
  });

  it('is whole seconds, as S3 keeps it', () => {
    expect(lockUntil(T0 + 1, rules({}), null, new Date(T0)).getTime() % 1000).toBe(0);
  });

  // Two years of backups every 5 hours, with gaps of up to 23 hours (so a day's only backup may be
  // its first): whenever retention keeps a backup by a dated rule (the days rule or a GFS period),
  // its lock has not passed. Neither the minimum count nor a period without any backup (a GFS rule
  // counts only periods that have one) is bounded by a date: docs/offsite.md#object-lock says so.
  it.each(['UTC', 'Europe/Berlin', 'America/New_York', 'Pacific/Auckland'])('retention never keeps a backup by days or GFS past its lock (%s)', (tz) => {
    const r = rules({ days: 3, minCount: 1, daily: 7, weekly: 5, monthly: 13, yearly: 1 });
    let kept: { m: Manifest; lock: number }[] = [];
    const late: string[] = [];
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let t = T0; t < T0 + 2 * 366 * DAY; t += next() < 0.2 ? Math.ceil(next() * 23) * HOUR : 5 * HOUR) {
      kept.push({ m: manifest(t), lock: lockUntil(t, r, null, new Date(t + 60_000)).getTime() });
      const now = new Date(t + 120_000);
      const decisions = applyRetention(
        kept.map((k) => k.m),
        r,
        now,
        tz,
      );
      const keep = new Set(decisions.filter((d) => d.action === 'keep').map((d) => d.manifest.id));
      for (const d of decisions) {
        const lock = kept.find((k) => k.m.id === d.manifest.id)!.lock;
        if (d.keptBy.some((k) => k.rule !== 'min-count') && lock < now.getTime()) late.push(`${d.manifest.id} ${d.reason}`);
      }
      kept = kept.filter((k) => keep.has(k.m.id));
    }
    expect(late).toEqual([]);
  });
});
