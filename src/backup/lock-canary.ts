import type { Target } from '../app';
import { asBackupError } from '../errors';
import type { ObjectLocks, ObjectVersion } from '../storage/types';

/** One row of `config check`. */
export interface CanaryResult {
  check: string;
  status: 'ok' | 'fail';
  detail: string;
  hint?: string | undefined;
}

/** The canary's name under the target's prefix: hidden (a dot), so no listing of backups sees it. */
export const CANARY = '.basement-backup-lock-canary';
const CANARY_LOCK_MS = 86400_000;
/** A canary whose lock ends sooner than this is replaced: the attempts must meet a lock that holds. */
const CANARY_MARGIN_MS = 3600_000;

/**
 * `config check` on a target with `object_lock` (issue 22, point 4): proves on a canary object,
 * locked a day in the target's mode and reused while its lock holds, that the bucket refuses this
 * key's delete of a locked version, plainly and with the governance bypass header. The bypass
 * succeeding (governance, and a key that may bypass it: the bucket owner's) is a FAIL naming the
 * fix; the canary is then written again at the next check.
 */
export async function lockCanaryChecks(t: Target): Promise<CanaryResult[]> {
  const locks = t.repo.storage.locks;
  const policy = t.repo.lock;
  if (!locks || !policy) return [];
  const check = `target ${t.name} Object Lock`;
  let canary: ObjectVersion;
  try {
    await locks.check();
  } catch {
    return []; // the target's own row says it, with the fix
  }
  try {
    canary = await lockedCanary(t, locks);
  } catch (err) {
    const e = asBackupError(err);
    return [{ check, status: 'fail', detail: e.message, hint: e.hint }];
  }
  const rows: CanaryResult[] = [];
  const attempt = async (bypass: boolean): Promise<void> => {
    const what = bypass ? 'with the governance bypass header' : 'plainly';
    const name = `${check}: delete ${bypass ? 'with bypass' : 'plain'}`;
    try {
      const r = await locks.tryDelete(canary, bypass);
      if (r === 'refused') rows.push({ check: name, status: 'ok', detail: `this key cannot delete a locked version ${what} (canary ${CANARY})` });
      else
        rows.push({
          check: name,
          status: 'fail',
          detail: `this key deleted a locked version ${what}: a stolen server can delete every backup`,
          hint: bypassHint(t.name),
        });
    } catch (err) {
      const e = asBackupError(err);
      rows.push({ check: name, status: 'fail', detail: e.message, hint: e.hint });
    }
  };
  await attempt(false);
  if (rows[0]?.status === 'ok') await attempt(true);
  return rows;
}

function bypassHint(target: string): string {
  return `Governance mode does not hold against a key that may bypass it (the bucket owner's, or one with s3:BypassGovernanceRetention): set object_lock: compliance on the ${target} target (S3_OBJECT_LOCK=compliance) with a new bucket or prefix, or give the server a key without that permission; see docs/offsite.md#object-lock.`;
}

/** The canary version whose lock holds for the next hour; written (locked a day) when there is none. */
async function lockedCanary(t: Target, locks: ObjectLocks): Promise<ObjectVersion> {
  const soon = Date.now() + CANARY_MARGIN_MS;
  const held = async (): Promise<ObjectVersion | undefined> => {
    for (const v of (await locks.versions(CANARY)).filter((x) => x.name === CANARY && !x.deleteMarker)) {
      const lock = await locks.lockOf(v);
      if (lock && lock.until.getTime() > soon) return v;
    }
    return undefined;
  };
  const found = await held();
  await removeSpent(locks, found);
  if (found) return found;
  const lock = { mode: t.repo.lock!.mode, until: new Date(Math.ceil((Date.now() + CANARY_LOCK_MS) / 1000) * 1000) };
  await t.repo.storage.writeAtomic(CANARY, 'basement-backup: the Object Lock canary of `config check`\n', { lock });
  const written = await held();
  if (!written) throw new Error(`${CANARY} was written but no locked version of it is listed`);
  return written;
}

/** Removes the canary's versions whose lock has passed (and its delete markers), but `keep`; best effort. */
async function removeSpent(locks: ObjectLocks, keep: ObjectVersion | undefined): Promise<void> {
  const now = new Date();
  for (const v of (await locks.versions(CANARY)).filter((x) => x.name === CANARY && x.versionId !== keep?.versionId)) {
    const lock = await locks.lockOf(v).catch(() => ({ until: new Date(8.64e15) }));
    if (!lock || lock.until <= now) await locks.purge(v).catch(() => undefined);
  }
}
