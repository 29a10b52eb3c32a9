import { describe, expect, it } from 'vitest';
import { applyRetention, type RetentionDecision } from '../../src/retention/policy';
import { backupId, dataFileName, type Manifest } from '../../src/repository/manifest';

const NOW = new Date('2026-03-10T12:00:00.000Z');
const DAY = 86400_000;

/** A manifest of "webserver_db" taken `ageDays` before NOW. */
function manifest(name: string, ageDays: number, keep_until: string | null = null): Manifest {
  const created = new Date(NOW.getTime() - ageDays * DAY);
  const id = `${backupId('webserver_db', created)}_${name}`;
  // Only the fields retention reads matter; the cast keeps this independent of later manifest additions.
  return {
    manifest_version: 1,
    id,
    file: dataFileName(id, 'custom'),
    database: 'webserver_db',
    created_at: created.toISOString(),
    finished_at: created.toISOString(),
    duration_ms: 1000,
    size_bytes: 28_000,
    sha256: 'a'.repeat(64),
    format: 'custom',
    compression: null,
    pg_dump_version: '15.8',
    server_version: '15.8',
    label: name,
    keep_until,
    tables: ['public.users'],
    tool: { name: 'basement-backup', version: '0.1.0' },
    host: 'srv1',
    trigger: 'schedule',
  } as Manifest;
}

function deleted(decisions: RetentionDecision[]): string[] {
  return decisions
    .filter((d) => d.action === 'delete')
    .map((d) => d.manifest.label!)
    .sort();
}

function kept(decisions: RetentionDecision[]): string[] {
  return decisions
    .filter((d) => d.action === 'keep')
    .map((d) => d.manifest.label!)
    .sort();
}

function byLabel(decisions: RetentionDecision[], label: string): RetentionDecision {
  const d = decisions.find((x) => x.manifest.label === label);
  if (!d) throw new Error(`no decision for ${label}`);
  return d;
}

const inFuture = new Date(NOW.getTime() + 10 * DAY).toISOString();
const inPast = new Date(NOW.getTime() - 1 * DAY).toISOString();

interface Case {
  name: string;
  backups: [label: string, ageDays: number, keep_until?: string | null][];
  days: number;
  minCount: number;
  expectDeleted: string[];
}

const cases: Case[] = [
  { name: 'no backups', backups: [], days: 7, minCount: 7, expectDeleted: [] },
  { name: 'a single very old backup is the newest: kept', backups: [['a', 400]], days: 7, minCount: 1, expectDeleted: [] },
  {
    name: 'all younger than the retention: nothing goes',
    backups: [
      ['a', 0.5],
      ['b', 1],
      ['c', 3],
      ['d', 6.9],
    ],
    days: 7,
    minCount: 1,
    expectDeleted: [],
  },
  {
    name: 'daily backups for 12 days, 7 days / min 2: only those older than 7 days go',
    backups: Array.from({ length: 12 }, (_, i): [string, number] => [`d${i + 1}`, i + 1]),
    days: 7,
    minCount: 2,
    expectDeleted: ['d10', 'd11', 'd12', 'd8', 'd9'],
  },
  {
    name: 'exactly at the cutoff is not older than it',
    backups: [
      ['new', 0],
      ['b', 1],
      ['edge', 7],
      ['old', 7.001],
    ],
    days: 7,
    minCount: 1,
    expectDeleted: ['old'],
  },
  {
    name: 'all old, min count 3: the 3 newest stay',
    backups: [
      ['a', 20],
      ['b', 21],
      ['c', 22],
      ['d', 23],
      ['e', 24],
    ],
    days: 7,
    minCount: 3,
    expectDeleted: ['d', 'e'],
  },
  {
    name: 'all old and exactly min count of them: nothing goes',
    backups: [
      ['a', 20],
      ['b', 21],
      ['c', 22],
    ],
    days: 7,
    minCount: 3,
    expectDeleted: [],
  },
  {
    name: 'min count larger than the number of backups: nothing goes',
    backups: [
      ['a', 30],
      ['b', 40],
    ],
    days: 7,
    minCount: 7,
    expectDeleted: [],
  },
  {
    name: 'min count 0 still never deletes the newest',
    backups: [
      ['a', 30],
      ['b', 40],
      ['c', 50],
    ],
    days: 7,
    minCount: 0,
    expectDeleted: ['b', 'c'],
  },
  {
    name: 'keep forever and keep_until in the future survive when old; a past keep_until does not',
    backups: [
      ['new', 0],
      ['new2', 1],
      ['forever', 60, 'forever'],
      ['until-future', 50, inFuture],
      ['until-past', 40, inPast],
      ['plain-old', 30],
    ],
    days: 7,
    minCount: 2,
    expectDeleted: ['plain-old', 'until-past'],
  },
  {
    name: 'a past keep_until on a young backup: still kept for its age',
    backups: [
      ['new', 0],
      ['young-past-keep', 2, inPast],
    ],
    days: 7,
    minCount: 1,
    expectDeleted: [],
  },
  {
    // issue 11: pinned backups are never counted as good for the minimum: pinning one never lets another go
    name: 'pinned backups do not take a place among the newest min count',
    backups: [
      ['forever-newest', 10, 'forever'],
      ['b', 11],
      ['c', 12],
      ['d', 13],
    ],
    days: 7,
    minCount: 2,
    expectDeleted: ['d'],
  },
];

describe('applyRetention', () => {
  it.each(cases)('$name', ({ backups, days, minCount, expectDeleted }) => {
    const manifests = backups.map(([label, age, keep]) => manifest(label, age, keep ?? null));
    const decisions = applyRetention(manifests, { days, minCount }, NOW);
    expect(deleted(decisions)).toEqual([...expectDeleted].sort());
    // every backup gets exactly one decision, with a reason
    expect(decisions).toHaveLength(manifests.length);
    expect(new Set(decisions.map((d) => d.manifest.id)).size).toBe(manifests.length);
    for (const d of decisions) expect(d.reason.length).toBeGreaterThan(5);
    // the result never leaves fewer than min count (at least 1) backups, and never deletes the newest
    const remaining = decisions.length - deleted(decisions).length;
    expect(remaining).toBeGreaterThanOrEqual(Math.min(manifests.length, Math.max(1, minCount)));
    if (manifests.length > 0) {
      const newest = [...manifests].sort((a, b) => b.created_at.localeCompare(a.created_at))[0]!;
      expect(decisions.find((d) => d.manifest.id === newest.id)!.action).toBe('keep');
    }
    // nothing younger than `days` and nothing protected is ever deleted
    for (const d of decisions.filter((x) => x.action === 'delete')) {
      expect(NOW.getTime() - Date.parse(d.manifest.created_at)).toBeGreaterThan(days * DAY);
      expect(d.manifest.keep_until === 'forever' || (d.manifest.keep_until !== null && Date.parse(d.manifest.keep_until) > NOW.getTime())).toBe(false);
    }
  });

  it('does not depend on the order of its input and returns newest first', () => {
    const manifests = [manifest('c', 30), manifest('a', 1), manifest('d', 40), manifest('b', 20)];
    const forward = applyRetention(manifests, { days: 7, minCount: 1 }, NOW);
    const reversed = applyRetention([...manifests].reverse(), { days: 7, minCount: 1 }, NOW);
    expect(forward.map((d) => [d.manifest.label, d.action])).toEqual(reversed.map((d) => [d.manifest.label, d.action]));
    expect(forward.map((d) => d.manifest.label)).toEqual(['a', 'b', 'c', 'd']);
    expect(deleted(forward)).toEqual(['b', 'c', 'd']);
  });

  it('gives the reason for each decision', () => {
    const decisions = applyRetention(
      [
        manifest('newest', 0),
        manifest('second', 1),
        manifest('young', 3),
        manifest('forever', 90, 'forever'),
        manifest('until', 90, inFuture),
        manifest('old', 30),
      ],
      { days: 7, minCount: 2 },
      NOW,
    );
    // every rule that keeps a backup is named
    expect(byLabel(decisions, 'newest').reason).toBe('min count 1/2, younger than 7 days');
    expect(byLabel(decisions, 'second').reason).toBe('min count 2/2, younger than 7 days');
    expect(byLabel(decisions, 'young').reason).toBe('younger than 7 days');
    expect(byLabel(decisions, 'forever').reason).toBe('pinned forever');
    expect(byLabel(decisions, 'until').reason).toBe(`pinned until ${inFuture}`);
    expect(byLabel(decisions, 'old')).toMatchObject({ action: 'delete', keptBy: [], reason: 'older than 7 days, 2 newer backups exist' });
    expect(kept(decisions)).toEqual(['forever', 'newest', 'second', 'until', 'young']);
  });

  it('keeps a backup whose created_at cannot be read, and one whose keep_until cannot be read', () => {
    const broken = { ...manifest('broken-date', 30), created_at: 'yesterday-ish' };
    const badKeep = manifest('bad-keep', 30, 'someday');
    const decisions = applyRetention([manifest('newest', 0), broken, badKeep, manifest('old', 30)], { days: 7, minCount: 1 }, NOW);
    expect(deleted(decisions)).toEqual(['old']);
  });

  it('is pure: the input array and manifests are left as they were', () => {
    const manifests = [manifest('old', 30), manifest('new', 0)];
    const copy = structuredClone(manifests);
    applyRetention(manifests, { days: 7, minCount: 1 }, NOW);
    expect(manifests).toEqual(copy);
  });
});
