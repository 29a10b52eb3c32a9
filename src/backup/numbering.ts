import type { Target } from '../app';
import { backupId, idOf } from '../repository/manifest';
import type { Listing } from '../repository/repository';

/** The first free id for a backup started at `at`: a retry within the same second gets a suffix. */
export function uniqueId(database: string, listings: Map<Target, Listing>, at: Date): string {
  const taken = new Set<string>();
  for (const l of listings.values()) {
    for (const b of l.backups) taken.add(b.id);
    for (const o of l.orphans) taken.add(idOf(database, o.name)!);
  }
  for (let n = 0; ; n++) {
    const id = backupId(database, at, n);
    if (!taken.has(id)) return id;
  }
}

/** One more than the highest sequence number of any backup on any reachable target, or remembered from the last success. */
export function nextSeq(listings: Map<Target, Listing>, lastSeq: number | undefined): number {
  let max = lastSeq ?? 0;
  let unnumbered = 0;
  for (const l of listings.values()) {
    for (const b of l.backups) {
      if (b.manifest?.seq !== undefined) max = Math.max(max, b.manifest.seq);
      else unnumbered++;
    }
  }
  return Math.max(max, unnumbered) + 1;
}
