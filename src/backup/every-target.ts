import type { App, Target } from '../app';
import type { Manifest } from '../repository/manifest';
import { newestFirst } from '../repository/manifest';
import { isGood, type ListedBackup } from '../repository/repository';
import { waitAtMost, type Waited } from '../util/deadline';

/** One target's backups, or why they could not be listed. */
export type TargetListing = { target: Target } & Waited<ListedBackup[]>;

/**
 * The backups of `database` on every target, listed at once; a target that fails (or, with
 * `deadlineMs`, does not answer in time) is reported as such, never thrown.
 */
export function listEveryTarget(app: App, database: string, opts: { deadlineMs?: number; signal?: AbortSignal } = {}): Promise<TargetListing[]> {
  return Promise.all(
    app.targets.map(async (target): Promise<TargetListing> => {
      const listing = target.repo.list(database);
      if (opts.deadlineMs !== undefined) return { target, ...(await waitAtMost(listing, opts.deadlineMs, opts.signal)) };
      return listing.then(
        (value) => ({ target, state: 'done', value }),
        (error: unknown) => ({ target, state: 'failed', error }),
      );
    }),
  );
}

/** The newest good backup (by sequence number) on any target listed, and the first target that holds it. */
export function newestGood(listings: TargetListing[]): { manifest: Manifest; target: Target } | undefined {
  const found: { manifest: Manifest; target: Target }[] = [];
  for (const l of listings) {
    const good = l.state === 'done' ? l.value.find(isGood) : undefined;
    if (good) found.push({ manifest: good.manifest, target: l.target });
  }
  return found.sort((a, b) => newestFirst(a.manifest, b.manifest))[0];
}
