import { describe, expect, it } from 'vitest';
import { BackupError } from '../../src/errors';
import { deletedBackups } from '../../src/repository/deleted';
import { Repository } from '../../src/repository/repository';
import type { ObjectHistory, ObjectVersion, Storage, Versioning } from '../../src/storage/types';

// Which backups count as deleted on a bucket with versions, and which version of each object is
// read: the domain decides from ListObjectVersions alone (no object is read here).

const A = 'shop_20261201T020000Z';
const B = 'shop_20261202T020000Z';
const C = 'shop_20261203T020000Z';
const D = 'shop_20261204T020000Z';
const E = 'shop_20261205T020000Z';
const OTHER = 'shop_x_20261201T020000Z'; // another database whose name starts like this one's

let n = 0;
function v(name: string, at: string, o: { marker?: boolean; latest?: boolean } = {}): ObjectVersion {
  return { name, versionId: `v${++n}`, deleteMarker: o.marker === true, latest: o.latest === true, size: o.marker ? undefined : 100, modified: new Date(at) };
}

function repoWith(versions: ObjectVersion[], versioning: Versioning = 'enabled'): Repository {
  const history: ObjectHistory = {
    versioning: () => Promise.resolve(versioning),
    versions: (prefix) => Promise.resolve(versions.filter((x) => x.name.startsWith(prefix))),
    readText: () => Promise.reject(new Error('not read here')),
    openRead: () => {
      throw new Error('not read here');
    },
  };
  return new Repository({ name: 's3', location: 's3://b/p/', history } as unknown as Storage);
}

describe('deletedBackups', () => {
  const m = (id: string) => `${id}.manifest.json`;
  const d = (id: string) => `${id}.dump.zst`;
  const versions = [
    // A: every object deleted (a delete marker is current), one version each behind it
    v(m(A), '2026-12-06T10:00:00Z', { marker: true, latest: true }),
    v(m(A), '2026-12-01T02:00:00Z'),
    v(d(A), '2026-12-06T10:00:00Z', { marker: true, latest: true }),
    v(d(A), '2026-12-01T02:00:00Z'),
    // B: current, nothing deleted
    v(m(B), '2026-12-02T02:00:00Z', { latest: true }),
    v(d(B), '2026-12-02T02:00:00Z', { latest: true }),
    // C: only the manifest deleted; the data is current and read as it is
    v(m(C), '2026-12-06T10:00:00Z', { marker: true, latest: true }),
    v(m(C), '2026-12-03T02:00:00Z'),
    v(d(C), '2026-12-03T02:00:00Z', { latest: true }),
    // D: two versions of the manifest behind the marker (written again by a sync), listed oldest first: the newest is read
    v(m(D), '2026-12-06T10:00:00Z', { marker: true, latest: true }),
    v(m(D), '2026-12-04T02:00:00Z'),
    v(m(D), '2026-12-05T02:00:00Z'),
    v(d(D), '2026-12-04T02:00:00Z', { latest: true }),
    // E: only delete markers left (its versions were removed for good): nothing to read
    v(m(E), '2026-12-06T10:00:00Z', { marker: true, latest: true }),
    // another database's deleted backup
    v(m(OTHER), '2026-12-06T10:00:00Z', { marker: true, latest: true }),
    v(m(OTHER), '2026-12-01T02:00:00Z'),
  ];
  const id = (x: ObjectVersion | undefined) => x && versions.indexOf(x);

  it('lists the backups whose manifest a delete hid, reading the newest version of each object, current ones as they are', async () => {
    const hidden = await deletedBackups(repoWith(versions), 'shop');
    expect([...hidden.deletedAt.keys()].sort()).toEqual([A, C, D]);
    expect(hidden.deletedAt.get(A)).toEqual(new Date('2026-12-06T10:00:00Z'));
    expect(Object.fromEntries([...hidden.versions].map(([name, x]) => [name, id(x)]))).toEqual({
      [m(A)]: 1,
      [d(A)]: 3,
      [m(C)]: 7,
      [d(C)]: 8,
      [m(D)]: 11,
      [d(D)]: 12,
    });
    expect(await hidden.repo.storage.list()).toEqual([...hidden.versions.keys()].sort().map((name) => ({ name, size: 100 })));
    await expect(hidden.repo.storage.writeAtomic('x', 'y')).rejects.toThrow(/are not written to/);
  });

  it('refuses a bucket whose versioning was never on, a server without it, and a local target, each with the fix', async () => {
    const fail = async (r: Repository) => (await deletedBackups(r, 'shop').catch((e: unknown) => e)) as BackupError;
    for (const [versioning, message] of [
      ['off', 'bucket versioning is not on for s3://b/p/, so a delete there is final'],
      ['unsupported', 'the S3 server of s3://b/p/ does not offer versioning'],
    ] as const) {
      const e = await fail(repoWith(versions, versioning));
      expect(e.code).toBe('CONFIG');
      expect(e.message).toContain(message);
      expect(e.hint).toContain('docs/offsite.md#versioned-buckets');
    }
    const local = await fail(new Repository({ name: 'local', location: '/backups' } as unknown as Storage));
    expect(local.code).toBe('CONFIG');
    expect(local.message).toContain('local is a local directory: it keeps no versions');
  });

  it('suspended versioning still lists what the versions made before keep', async () => {
    const hidden = await deletedBackups(repoWith(versions, 'suspended'), 'shop');
    expect(hidden.versioning).toBe('suspended');
    expect([...hidden.deletedAt.keys()].sort()).toEqual([A, C, D]);
  });
});
