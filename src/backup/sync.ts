import type { App, Target } from '../app';
import { asBackupError, BackupError } from '../errors';
import { holdLock } from '../lock/file-lock';
import { log } from '../logger';
import { clockDoubt, readServerClock } from '../retention/clock-check';
import { applyRetention } from '../retention/policy';
import type { Manifest, Pin } from '../repository/manifest';
import { isGood } from '../repository/repository';
import { withReleasers } from '../util/releasers';
import { deletedSources, type SyncSource } from './sync-deleted';

export interface SyncCopy {
  id: string;
  from: string;
  to: string;
  ok: boolean;
  error?: string;
}

/**
 * The pin every target should have for each backup: the newest pin made for all targets (by
 * pinned_at) wherever it is. Pins made for one target stay there.
 */
function sharedPins(have: Map<string, Map<string, Manifest>>): Map<string, Pin> {
  const pins = new Map<string, Pin>();
  for (const ms of have.values()) {
    for (const m of ms.values()) {
      const p = m.pin;
      if (p?.scope !== 'all') continue;
      const prev = pins.get(m.id);
      if (!prev || p.pinned_at > prev.pinned_at) pins.set(m.id, p);
    }
  }
  return pins;
}

/**
 * Would `target`'s retention keep this backup were it there: applied to every good backup
 * anywhere, with the pins made for all targets? Others are not copied, or retention would delete
 * them again.
 */
function wantedOn(app: App, target: Target, all: Manifest[], pins: Map<string, Pin>, now: Date): Set<string> {
  const withPins = all.map((m) => {
    const pin = pins.get(m.id);
    return pin ? { ...m, pin } : { ...m, pin: undefined };
  });
  return new Set(
    applyRetention(withPins, target.retention, now, app.config.timezone)
      .filter((d) => d.action === 'keep')
      .map((d) => d.manifest.id),
  );
}

/**
 * Copies good backups that are missing from a target (it was down during the backup, or was
 * added later) from a target that has them, within the receiving target's retention window; while
 * the clock is in doubt (`clockDoubt`: it disagrees with the database server's, or the server
 * cannot be asked), every good backup it lacks, so a wrong clock never keeps a pinned backup off a target.
 * The copy streams through sha256 and is committed only when it matches the manifest; the
 * manifest is written last, as in a backup. Takes the backup lock. A target that cannot be
 * listed is skipped, and after copying what it can between the others, sync fails with a
 * STORAGE error naming it (it cannot tell what that target is missing). With `deleted`, the good
 * backups deleted on an S3 target whose bucket keeps versions are sources too, read from their
 * versions and copied by the same rules to every target that lacks them, that one included (they
 * are current there again, as new versions; what retention would not keep, e.g. pruned, stays deleted).
 */
export async function syncTargets(app: App, opts: { deleted?: boolean } = {}): Promise<SyncCopy[]> {
  const database = app.database.db.database;
  if (app.targets.length < 2) return [];
  const sources: SyncSource[] = app.targets.map((t) => ({ key: t.name, target: t }));
  return withReleasers(async (releasers) => {
    holdLock(releasers, app.lockFile(database), `sync of ${database}`);
    const copies: SyncCopy[] = [];
    const clock = await readServerClock(app.database.db);
    const now = new Date();
    const have = new Map<string, Map<string, Manifest>>();
    // a damaged copy is not overwritten: it stays, DAMAGED, until the operator removes it (prune --damaged)
    const present = new Map<string, Set<string>>();
    const unreachable: { name: string; error: BackupError }[] = [];
    for (const t of app.targets) {
      try {
        const listed = await t.repo.list(database);
        await t.repo.removeLeftovers(database); // what a killed sync left
        have.set(t.name, new Map(listed.filter(isGood).map((b) => [b.id, b.manifest])));
        present.set(t.name, new Set(listed.map((b) => b.id)));
      } catch (err) {
        const error = asBackupError(err);
        unreachable.push({ name: t.name, error });
        log.warn(`sync: cannot list target ${t.name}; skipping it`, { error: error.message });
      }
    }
    // --deleted: the backups deleted on a bucket with versions are copied from their versions too
    if (opts.deleted) {
      for (const { source, good } of await deletedSources(app, database)) {
        sources.push(source);
        have.set(source.key, good);
      }
    }
    const all = new Map<string, Manifest>();
    for (const ms of have.values()) for (const m of ms.values()) all.set(m.id, m);
    const pins = sharedPins(have);
    const doubt = clockDoubt(clock, [...all.values()], now, undefined);
    if (doubt) {
      log.warn(`${doubt.cause}; sync copies every good backup a target lacks, not only those its retention keeps by this clock`, { hint: doubt.hint });
    }
    for (const dest of app.targets) {
      const destHas = have.get(dest.name);
      if (!destHas) continue;
      await carryPins(dest, destHas, pins);
      const wanted = doubt ? new Set(all.keys()) : wantedOn(app, dest, [...all.values()], pins, now);
      for (const source of sources) {
        const sourceHas = have.get(source.key);
        if (source.key === dest.name || !sourceHas) continue;
        for (const m of sourceHas.values()) {
          if (present.get(dest.name)!.has(m.id) || !wanted.has(m.id)) continue;
          try {
            const pin = pins.get(m.id);
            await source.target.repo.copyTo(dest.repo, pin ? { ...m, pin } : { ...m, pin: undefined });
            destHas.set(m.id, m);
            present.get(dest.name)!.add(m.id);
            copies.push({ id: m.id, from: source.key, to: dest.name, ok: true });
            log.info('sync: copied a backup', { id: m.id, from: source.key, to: dest.name });
          } catch (err) {
            const e = asBackupError(err);
            copies.push({ id: m.id, from: source.key, to: dest.name, ok: false, error: e.message });
            log.warn('sync: copy failed', { id: m.id, from: source.key, to: dest.name, error: e.message });
          }
        }
      }
    }
    if (unreachable.length > 0) {
      const names = unreachable.map((u) => u.name).join(', ');
      const first = unreachable[0]!.error;
      throw new BackupError('STORAGE', `sync cannot reach ${names}: ${first.message}`, {
        hint: `${copies.filter((c) => c.ok).length} backup(s) were copied between the other targets; run sync again once ${names} works. ${first.hint ?? ''}`.trim(),
        cause: first,
      });
    }
    return copies;
  });
}

/** Gives `dest`'s copies of backups the newest pin made for all targets, where theirs is older or missing. */
async function carryPins(dest: Target, destHas: Map<string, Manifest>, pins: Map<string, Pin>): Promise<void> {
  for (const [id, pin] of pins) {
    const m = destHas.get(id);
    if (!m || (m.pin && m.pin.pinned_at >= pin.pinned_at)) continue;
    try {
      await dest.repo.writePin(id, pin);
      m.pin = pin;
      log.info('sync: carried a pin', { id, to: dest.name, keep_until: pin.keep_until });
    } catch (err) {
      log.warn('sync: could not carry a pin', { id, to: dest.name, error: asBackupError(err).message });
    }
  }
}
