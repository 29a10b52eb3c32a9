import type { RetentionRules, TargetConfig } from '../config/types';
import { lockUntil } from '../retention/lock';
import type { ObjectLock, ObjectLocks, ObjectVersion, PutOptions } from '../storage/types';
import { idTime, manifestFileName } from './manifest';

/** A target's S3 Object Lock: its mode and the retention its locks must cover. */
export interface LockPolicy {
  mode: ObjectLock['mode'];
  rules: RetentionRules;
  /** Tests only (BACKUP_TEST_LOCK_SECONDS). */
  testSeconds?: number | undefined;
}

export function lockPolicyOf(t: TargetConfig): LockPolicy | undefined {
  if (t.type !== 's3' || !t.objectLock) return undefined;
  return { mode: t.objectLock.mode === 'compliance' ? 'COMPLIANCE' : 'GOVERNANCE', rules: t.retention, testSeconds: t.objectLock.testSeconds };
}

/** The lock an object of backup `id` (pinned or kept until `keepUntil`) is written with now: see lockUntil. */
export function lockFor(p: LockPolicy, id: string, keepUntil: string | null, now = new Date()): ObjectLock {
  return { mode: p.mode, until: lockUntil(idTime(id), p.rules, keepUntil, now, p.testSeconds) };
}

/**
 * The put options of an object written now that belongs to no dump (a WAL file, a base backup):
 * locked, on a locked target, as long as retention keeps what is taken now.
 */
export function putOptionsNow(p: LockPolicy | undefined, locks: ObjectLocks | undefined, now = new Date()): PutOptions {
  return p && locks ? { lock: { mode: p.mode, until: lockUntil(now.getTime(), p.rules, null, now, p.testSeconds) } } : {};
}

/** The put options of an object of backup `id`: its lock on a locked target, else none. */
export function putOptions(p: LockPolicy | undefined, locks: ObjectLocks | undefined, id: string, keepUntil: string | null): PutOptions {
  return p && locks ? { lock: lockFor(p, id, keepUntil) } : {};
}

/** The name every object of backup `id` starts with. */
function objectsOf(id: string): string {
  return `${id}.`;
}

/** The versions of backup `id`'s objects (those named in `only`, when given). */
async function versionsOf(locks: ObjectLocks, id: string, only?: string[]): Promise<ObjectVersion[]> {
  const all = await locks.versions(objectsOf(id));
  return only ? all.filter((v) => only.includes(v.name)) : all;
}

/** The latest lock still holding on a version of backup `id`'s objects (of `only`), or undefined when none does. */
export async function heldUntil(locks: ObjectLocks, id: string, now: Date, only?: string[]): Promise<Date | undefined> {
  let latest: Date | undefined;
  for (const v of await versionsOf(locks, id, only)) {
    const lock = await locks.lockOf(v);
    if (lock && lock.until > now && (!latest || lock.until > latest)) latest = lock.until;
  }
  return latest;
}

/** Lengthens the lock of every version of backup `id`'s objects to `lock` where it ends sooner (a pin). Returns how many. */
export async function extendLocks(locks: ObjectLocks, id: string, lock: ObjectLock): Promise<number> {
  let n = 0;
  for (const v of await versionsOf(locks, id)) {
    const now = await locks.lockOf(v);
    if (v.deleteMarker || (now && now.until >= lock.until)) continue;
    await locks.extend(v, { mode: now?.mode ?? lock.mode, until: lock.until });
    n++;
  }
  return n;
}

/**
 * Removes every version of backup `id`'s objects (of `only`) for good: the manifest's first, so a
 * backup half removed is never listed as good. Call it only once `heldUntil` found no lock.
 */
export async function purgeVersions(locks: ObjectLocks, id: string, only?: string[]): Promise<void> {
  const versions = await versionsOf(locks, id, only);
  const manifest = manifestFileName(id);
  const ordered = [...versions.filter((v) => v.name === manifest), ...versions.filter((v) => v.name !== manifest)];
  for (const v of ordered) await locks.purge(v);
}
