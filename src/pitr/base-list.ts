import type { Target } from '../app';
import type { BaseManifest } from '../wal/base-manifest';
import { walKind } from '../wal/segment';
import { listBaseBackups } from './base-listing';

/** The base backups of target `t` that can be recovered from (a record that reads, well formed, its data there at the recorded size), newest ending first. */
export async function goodBaseBackups(t: Target): Promise<BaseManifest[]> {
  const { backups } = await listBaseBackups(t);
  return backups
    .flatMap((b) => (b.manifest && !b.damage ? [b.manifest] : []))
    .filter((m) => m.kind === 'base' && walKind(m.wal_first) === 'segment' && walKind(m.wal_last) === 'segment' && typeof m.stop_time === 'string')
    .sort((a, b) => b.stop_time.localeCompare(a.stop_time));
}
