import { describe, expect, it } from 'vitest';
import type { RetentionRules } from '../../src/config/types';
import { bucketOf, isoWeek } from '../../src/retention/calendar';
import { applyRetention, type RetentionDecision } from '../../src/retention/policy';
import { backupId, dataFileName, type Manifest, type Pin } from '../../src/repository/manifest';

/** A manifest taken at `at` (UTC), with sequence number `seq` (the order taken). */
function taken(at: string, seq: number, extra: Partial<Manifest> = {}): Manifest {
  const created = new Date(at);
  const id = backupId('webserver_db', created);
  return {
    manifest_version: 1,
    id,
    seq,
    file: dataFileName(id, 'custom'),
    database: 'webserver_db',
    created_at: created.toISOString(),
    label: null,
    keep_until: null,
    ...extra,
  } as Manifest;
}

/** One backup a day at `hourUtc`:`minute` from `first` to `last` (inclusive, UTC dates), in order. */
function daily(first: string, last: string, time = '02:00'): Manifest[] {
  const out: Manifest[] = [];
  for (let t = Date.parse(`${first}T${time}:00Z`), seq = 1; t <= Date.parse(`${last}T${time}:00Z`); t += 86400_000, seq++) {
    out.push(taken(new Date(t).toISOString(), seq));
  }
  return out;
}

/** Only the GFS rules: days 1 and min count 1 keep just the newest, so what else is kept is the rules' doing. */
function gfs(rules: Partial<RetentionRules>): RetentionRules {
  return { days: 1, minCount: 1, ...rules };
}

const keptDates = (ds: RetentionDecision[]) => ds.filter((d) => d.action === 'keep').map((d) => d.manifest.created_at.slice(0, 16));
const textOf = (ds: RetentionDecision[], at: string) => ds.find((d) => d.manifest.created_at.startsWith(at))!.reason;

describe('calendar buckets', () => {
  it('ISO weeks: Monday to Sunday, week 1 holds the first Thursday, across year ends', () => {
    expect(isoWeek(2026, 12, 31)).toEqual({ year: 2026, week: 53 }); // a Thursday: 2026 has 53 weeks
    expect(isoWeek(2027, 1, 3)).toEqual({ year: 2026, week: 53 }); // Sunday of that week
    expect(isoWeek(2027, 1, 4)).toEqual({ year: 2027, week: 1 }); // Monday
    expect(isoWeek(2024, 12, 30)).toEqual({ year: 2025, week: 1 }); // a Monday that belongs to the next year
    expect(isoWeek(2028, 2, 29)).toEqual({ year: 2028, week: 9 }); // leap day
    expect(isoWeek(2026, 11, 30)).toEqual({ year: 2026, week: 49 });
  });

  it('buckets are local calendar dates in the time zone, also on DST days', () => {
    // Berlin: CET (+1) in winter, CEST (+2) from 2026-03-29 01:00 UTC to 2026-10-25 01:00 UTC
    expect(bucketOf('daily', Date.parse('2026-03-28T23:30:00Z'), 'Europe/Berlin')).toBe('2026-03-29'); // 00:30 CET
    expect(bucketOf('daily', Date.parse('2026-03-28T22:59:00Z'), 'Europe/Berlin')).toBe('2026-03-28'); // 23:59 CET
    expect(bucketOf('daily', Date.parse('2026-10-24T22:30:00Z'), 'Europe/Berlin')).toBe('2026-10-25'); // 00:30 CEST
    expect(bucketOf('daily', Date.parse('2026-10-24T22:30:00Z'), 'UTC')).toBe('2026-10-24');
    // 02:30 happens twice on 2026-10-25 in Berlin: both the same day
    expect(bucketOf('daily', Date.parse('2026-10-25T00:30:00Z'), 'Europe/Berlin')).toBe('2026-10-25');
    expect(bucketOf('daily', Date.parse('2026-10-25T01:30:00Z'), 'Europe/Berlin')).toBe('2026-10-25');
    expect(bucketOf('monthly', Date.parse('2026-10-31T23:30:00Z'), 'Europe/Berlin')).toBe('2026-11'); // 00:30 CET on Nov 1
    expect(bucketOf('yearly', Date.parse('2026-12-31T23:30:00Z'), 'America/New_York')).toBe('2026');
    expect(bucketOf('yearly', Date.parse('2026-12-31T23:30:00Z'), 'Asia/Tokyo')).toBe('2027');
    expect(bucketOf('weekly', Date.parse('2027-01-03T23:30:00Z'), 'Asia/Tokyo')).toBe('2027-W01'); // Monday 08:30 in Tokyo
  });
});

describe('grandfather-father-son retention', () => {
  it('daily N: the newest backup of each of the last N days that have one, with the rule and the day named', () => {
    // four backups a day for ten days
    const ms: Manifest[] = [];
    let seq = 0;
    for (let day = 1; day <= 10; day++) for (const h of ['00', '06', '12', '18']) ms.push(taken(`2026-11-${String(day).padStart(2, '0')}T${h}:00:00Z`, ++seq));
    const ds = applyRetention(ms, gfs({ daily: 3 }), new Date('2026-11-10T20:00:00Z'));
    // days 1 keeps the last 24 h (from 11-09T20:00): day 10's four; daily 3 adds the newest of days 9 and 8
    expect(keptDates(ds)).toEqual(['2026-11-10T18:00', '2026-11-10T12:00', '2026-11-10T06:00', '2026-11-10T00:00', '2026-11-09T18:00', '2026-11-08T18:00']);
    expect(textOf(ds, '2026-11-10T18:00')).toBe('min count 1/1, younger than 1 days, daily 1/3 (2026-11-10)');
    expect(textOf(ds, '2026-11-09T18:00')).toBe('daily 2/3 (2026-11-09)');
    expect(textOf(ds, '2026-11-08T18:00')).toBe('daily 3/3 (2026-11-08)');
    expect(textOf(ds, '2026-11-07T18:00')).toBe('older than 1 days, 1 newer backups exist, not the newest of a kept day');
  });

  it('days without a backup (the server was down) do not use up a daily place', () => {
    const ms = daily('2026-11-01', '2026-11-10').filter((m) => !m.created_at.startsWith('2026-11-08') && !m.created_at.startsWith('2026-11-09'));
    const ds = applyRetention(ms, gfs({ daily: 3 }), new Date('2026-11-10T12:00:00Z'));
    expect(keptDates(ds)).toEqual(['2026-11-10T02:00', '2026-11-07T02:00', '2026-11-06T02:00']);
  });

  it('a backup taken late (after midnight) belongs to the day it was taken, and the day before keeps its own newest', () => {
    const ms = [
      taken('2026-11-05T23:30:00Z', 1),
      taken('2026-11-06T23:30:00Z', 2),
      taken('2026-11-08T00:20:00Z', 3), // the 11-07 run, late: a catch-up after a restart
      taken('2026-11-08T23:30:00Z', 4),
    ];
    const ds = applyRetention(ms, gfs({ daily: 3 }), new Date('2026-11-09T12:00:00Z'));
    // 11-08 has two backups: the newest (23:30) stands for it; the late one goes, 11-06 and 11-05 stay
    expect(keptDates(ds)).toEqual(['2026-11-08T23:30', '2026-11-06T23:30', '2026-11-05T23:30']);
  });

  it('monthly N across month ends, a leap day and a year end; yearly N', () => {
    const ms = daily('2027-11-15', '2028-03-05');
    const ds = applyRetention(ms, gfs({ monthly: 4, yearly: 2 }), new Date('2028-03-05T12:00:00Z'));
    expect(keptDates(ds)).toEqual(['2028-03-05T02:00', '2028-02-29T02:00', '2028-01-31T02:00', '2027-12-31T02:00']);
    expect(textOf(ds, '2028-02-29')).toBe('monthly 2/4 (2028-02)');
    expect(textOf(ds, '2027-12-31')).toBe('monthly 4/4 (2027-12), yearly 2/2 (2027)');
    expect(textOf(ds, '2028-03-05')).toContain('yearly 1/2 (2028)');
    // November 2027 is the fifth month: its newest backup goes
    expect(ds.find((d) => d.manifest.created_at.startsWith('2027-11-30'))!).toMatchObject({
      action: 'delete',
      reason: 'older than 1 days, 1 newer backups exist, not the newest of a kept month or year',
    });
  });

  it('monthly in a time zone: a backup at 23:30 UTC on the last day of the month belongs to the next month in Berlin', () => {
    const ms = [taken('2026-09-30T12:00:00Z', 1), taken('2026-09-30T23:30:00Z', 2), taken('2026-10-15T12:00:00Z', 3)];
    const now = new Date('2026-10-20T00:00:00Z');
    // in UTC, 09-30T23:30 is September's newest; in Berlin (01:30 on 10-01) it is October's, so September keeps 12:00
    expect(keptDates(applyRetention(ms, gfs({ monthly: 2 }), now, 'UTC'))).toEqual(['2026-10-15T12:00', '2026-09-30T23:30']);
    expect(keptDates(applyRetention(ms, gfs({ monthly: 2 }), now, 'Europe/Berlin'))).toEqual(['2026-10-15T12:00', '2026-09-30T12:00']);
  });

  it('daily N over the DST changes in Berlin counts local days', () => {
    // every night at 00:30 Berlin time: 23:30 UTC in winter, 22:30 UTC in summer
    const ms = [
      taken('2026-03-27T23:30:00Z', 1), // 03-28 00:30 CET
      taken('2026-03-28T23:30:00Z', 2), // 03-29 00:30 CET (the clocks go forward at 02:00)
      taken('2026-03-29T22:30:00Z', 3), // 03-30 00:30 CEST
      taken('2026-03-30T22:30:00Z', 4), // 03-31 00:30 CEST
    ];
    const ds = applyRetention(ms, gfs({ daily: 3 }), new Date('2026-03-31T10:00:00Z'), 'Europe/Berlin');
    expect(ds.filter((d) => d.action === 'keep').map((d) => d.keptBy.find((k) => k.rule === 'daily')!.text)).toEqual([
      'daily 1/3 (2026-03-31)',
      'daily 2/3 (2026-03-30)',
      'daily 3/3 (2026-03-29)',
    ]);
    // the autumn change: 02:00-03:00 twice on 10-25; a backup at each 02:30 is one day
    const autumn = [taken('2026-10-24T00:30:00Z', 1), taken('2026-10-25T00:30:00Z', 2), taken('2026-10-25T01:30:00Z', 3)];
    const da = applyRetention(autumn, gfs({ daily: 2 }), new Date('2026-10-26T12:00:00Z'), 'Europe/Berlin');
    expect(keptDates(da)).toEqual(['2026-10-25T01:30', '2026-10-24T00:30']);
  });

  it('weekly N: ISO weeks in the time zone, the newest of each', () => {
    const ms = daily('2026-12-14', '2027-01-06');
    const ds = applyRetention(ms, gfs({ weekly: 3 }), new Date('2027-01-06T12:00:00Z'));
    // weeks: 2027-W01 (Mon 01-04..), 2026-W53 (12-28..01-03), 2026-W52 (12-21..12-27)
    expect(keptDates(ds)).toEqual(['2027-01-06T02:00', '2027-01-03T02:00', '2026-12-27T02:00']);
    expect(textOf(ds, '2027-01-03')).toBe('weekly 2/3 (2026-W53)');
  });

  it('a backup is kept when any rule keeps it; pinned backups stand apart and never fill a period', () => {
    const pin: Pin = { keep_until: 'forever', note: 'v2 launch', pinned_at: '2026-10-31T10:00:00Z', scope: 'all', host: 'srv1' };
    const ms = [
      taken('2026-09-30T02:00:00Z', 1),
      taken('2026-10-30T02:00:00Z', 2),
      taken('2026-10-31T02:00:00Z', 3, { pin }), // October's newest, pinned
      taken('2026-11-20T02:00:00Z', 4),
      taken('2026-11-21T02:00:00Z', 5),
    ];
    const ds = applyRetention(ms, { days: 7, minCount: 1, monthly: 2 }, new Date('2026-11-22T12:00:00Z'));
    expect(textOf(ds, '2026-10-31')).toBe('pinned forever (v2 launch)');
    // October is still represented by an unpinned backup, so unpinning v2 later never leaves October empty
    expect(textOf(ds, '2026-10-30')).toBe('monthly 2/2 (2026-10)');
    expect(textOf(ds, '2026-11-21')).toBe('min count 1/1, younger than 7 days, monthly 1/2 (2026-11)');
    expect(textOf(ds, '2026-11-20')).toBe('younger than 7 days');
    expect(ds.find((d) => d.manifest.created_at.startsWith('2026-09-30'))!.action).toBe('delete');
  });

  it('a pin replaces the --keep the backup was taken with; an unpin (keep_until null) releases it', () => {
    const unpinned: Pin = { keep_until: null, note: null, pinned_at: '2026-11-01T00:00:00Z', scope: 'all', host: 'srv1' };
    const later: Pin = { keep_until: '2027-06-01T00:00:00.000Z', note: null, pinned_at: '2026-11-01T00:00:00Z', scope: 'target', host: 'srv1' };
    const ms = [
      taken('2026-09-01T02:00:00Z', 1, { keep_until: 'forever', pin: unpinned }),
      taken('2026-09-02T02:00:00Z', 2, { keep_until: '2026-09-10T00:00:00.000Z', pin: later }),
      taken('2026-11-20T02:00:00Z', 3),
    ];
    const ds = applyRetention(ms, { days: 7, minCount: 1 }, new Date('2026-11-22T12:00:00Z'));
    expect(ds.map((d) => [d.manifest.created_at.slice(0, 10), d.action, d.reason])).toEqual([
      ['2026-11-20', 'keep', 'min count 1/1, younger than 7 days'],
      ['2026-09-02', 'keep', 'pinned until 2027-06-01T00:00:00.000Z'],
      ['2026-09-01', 'delete', 'older than 7 days, 1 newer backups exist'],
    ]);
  });

  it('with every rule at 0 it is the days/min-count rule alone', () => {
    const ms = daily('2026-11-01', '2026-11-20');
    const a = applyRetention(ms, { days: 7, minCount: 3 }, new Date('2026-11-20T12:00:00Z'));
    const b = applyRetention(ms, { days: 7, minCount: 3, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, new Date('2026-11-20T12:00:00Z'));
    expect(b).toEqual(a);
    expect(keptDates(a)).toHaveLength(7);
  });
});
