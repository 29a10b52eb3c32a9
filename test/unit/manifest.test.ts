import { describe, expect, it } from 'vitest';
import { idOf, idTime, isFutureDated, newestFirst, provesDamage, readManifest, type Verification } from '../../src/repository/manifest';
import { supersedes } from '../../src/repository/repository';

const base = {
  manifest_version: 1,
  id: 'db_20260122T020000Z',
  file: 'db_20260122T020000Z.dump',
  sha256: 'ab',
  created_at: '2026-01-22T02:00:00.000Z',
  size_bytes: 10,
};

describe('readManifest', () => {
  it('says what is wrong with a manifest instead of hiding it', () => {
    expect(readManifest('')).toEqual({ problem: 'the manifest is empty' });
    expect(readManifest('{"manifest_version": 1, "id": "')).toEqual({ problem: 'the manifest is not valid JSON' });
    expect(readManifest('[1]')).toEqual({ problem: 'unknown manifest_version undefined' });
    expect(readManifest(JSON.stringify({ ...base, sha256: 3 }))).toEqual({ problem: 'the manifest has no valid "sha256"' });
    expect(readManifest(JSON.stringify(base), 'db_20260123T020000Z')).toEqual({
      problem: 'the manifest names backup db_20260122T020000Z, not db_20260123T020000Z',
    });
    expect(readManifest(JSON.stringify({ ...base, file: '../../etc/passwd' }))).toHaveProperty(
      'problem',
      expect.stringContaining('unexpected data file') as string,
    );
    expect(readManifest(JSON.stringify({ ...base, file: 'db_20260122T020000Z/../../x' }))).toHaveProperty(
      'problem',
      expect.stringContaining('unexpected data file') as string,
    );
    expect(readManifest(JSON.stringify({ ...base, roles_file: '/etc/shadow' }))).toHaveProperty(
      'problem',
      expect.stringContaining('unexpected roles file') as string,
    );
    expect(readManifest(JSON.stringify({ ...base, seq: 0 }))).toEqual({ problem: 'the manifest has an invalid "seq"' });
    expect(readManifest(JSON.stringify({ ...base, seq: 4 }), base.id)).toEqual({ manifest: { ...base, seq: 4 } });
  });
});

describe('ids and order', () => {
  it('idOf finds the backup an object belongs to, and only for that database', () => {
    expect(idOf('db', 'db_20260122T020000Z.dump')).toBe('db_20260122T020000Z');
    expect(idOf('db', 'db_20260122T020000Z_2.roles.sql')).toBe('db_20260122T020000Z_2');
    expect(idOf('db', 'db_staging_20260122T020000Z.dump')).toBeUndefined();
    expect(idOf('db', 'other_20260122T020000Z.dump')).toBeUndefined();
    expect(new Date(idTime('db_20260122T020000Z_2')).toISOString()).toBe('2026-01-22T02:00:00.000Z');
  });

  it('orders by sequence number whatever the dates say; unnumbered (older) backups come after, by date', () => {
    const ms = [
      { id: 'a', seq: 1, created_at: '2027-01-01T00:00:00Z' },
      { id: 'b', seq: 2, created_at: '2026-01-02T00:00:00Z' },
      { id: 'c', created_at: '2026-01-01T00:00:00Z' },
      { id: 'd', created_at: '2025-12-31T00:00:00Z' },
    ];
    expect([...ms].sort(newestFirst).map((m) => m.id)).toEqual(['b', 'a', 'c', 'd']);
  });

  it('flags a date more than five minutes ahead of the clock', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    expect(isFutureDated({ created_at: '2026-01-01T00:04:59Z' }, now)).toBe(false);
    expect(isFutureDated({ created_at: '2026-01-01T00:05:01Z' }, now)).toBe(true);
  });
});

describe('records of checks', () => {
  const rec = (v: Partial<Verification>): Verification => ({
    verified_at: '2026-01-01T00:00:00Z',
    ok: true,
    checksum_ok: true,
    restore_ms: null,
    tables_checked: 0,
    rows_checked: 0,
    mismatches: [],
    error: null,
    server: 'x',
    ...v,
  });
  const drillPassed = rec({ kind: 'drill' });
  const drillDamaged = rec({ kind: 'drill', ok: false, error_code: 'VERIFY_FAILED' });
  const checksumDamaged = rec({ kind: 'checksum', ok: false, checksum_ok: false, error_code: 'DAMAGED' });
  const checksumPassed = rec({ kind: 'checksum' });
  const couldNotRun = rec({ kind: 'drill', ok: false, error_code: 'PRIVILEGE' });

  it('only failures of the backup itself prove damage; a record without a code (older versions) does too', () => {
    expect(provesDamage(drillDamaged)).toBe(true);
    expect(provesDamage(checksumDamaged)).toBe(true);
    expect(provesDamage(rec({ ok: false, error_code: 'RESTORE_FAILED' }))).toBe(true);
    expect(provesDamage(rec({ ok: false }))).toBe(true);
    expect(provesDamage(couldNotRun)).toBe(false);
    expect(provesDamage(rec({ ok: false, error_code: 'DB_CONNECT' }))).toBe(false);
    expect(provesDamage(drillPassed)).toBe(false);
    expect(provesDamage(undefined)).toBe(false);
  });

  it('damage is replaced only by a check that proves the contrary', () => {
    expect(supersedes(couldNotRun, checksumDamaged)).toBe(false);
    expect(supersedes(couldNotRun, drillDamaged)).toBe(false);
    expect(supersedes(checksumPassed, drillDamaged)).toBe(false);
    expect(supersedes(checksumPassed, checksumDamaged)).toBe(true);
    expect(supersedes(drillPassed, drillDamaged)).toBe(true);
    expect(supersedes(drillPassed, checksumDamaged)).toBe(true);
    expect(supersedes(checksumDamaged, drillPassed)).toBe(true);
    // a checksum-only pass never replaces what a drill found
    expect(supersedes(checksumPassed, drillPassed)).toBe(false);
    expect(supersedes(couldNotRun, drillPassed)).toBe(true);
    expect(supersedes(checksumPassed, undefined)).toBe(true);
  });
});
