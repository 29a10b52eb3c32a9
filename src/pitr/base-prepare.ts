/**
 * Before a base backup writes to a target: the target's archive must be of this cluster (its
 * `archive.json`, recorded here when the archive is new), and what an earlier base backup left
 * unfinished (a crash) is removed. Run only while holding the base backup lock.
 */
import type { Target } from '../app';
import { BackupError } from '../errors';
import { log } from '../logger';
import { IDENTITY_FILE, WalArchive } from '../wal/archive';
import { magicOfVersion, versionOfMagic } from '../wal/segment';
import { BASE_MANIFEST_SUFFIX } from '../wal/base-manifest';
import { isBaseData, listBaseBackups } from './base-listing';
import type { BaseServer } from './base-server';

/** Records the cluster in a new archive; refuses (WAL_REFUSED) an archive of another cluster, version or segment size. */
export async function checkArchiveIdentity(t: Target, server: BaseServer, at: Date): Promise<void> {
  const archive = new WalArchive(t.name, t.pitr());
  const major = Math.floor(server.versionNum / 10000);
  const id = await archive.identity();
  if (!id) {
    const magic = magicOfVersion(major);
    // an unknown version's WAL magic is left for the first wal-push to record, from a segment's header
    if (magic !== undefined) {
      await archive.setIdentity({
        system_identifier: server.systemIdentifier,
        wal_magic: magic,
        pg_version: major,
        segment_size: server.segmentSize,
        created_at: at.toISOString(),
      });
    }
    return;
  }
  const archived = id.pg_version ?? versionOfMagic(id.wal_magic);
  const problem =
    id.system_identifier !== server.systemIdentifier
      ? `the server is database system ${server.systemIdentifier}, and this archive holds the WAL of system ${id.system_identifier}`
      : archived !== undefined && archived !== major
        ? `the server is PostgreSQL ${major}, and this archive holds PostgreSQL ${archived}'s WAL`
        : id.segment_size !== server.segmentSize
          ? `the server's WAL segments are ${server.segmentSize} bytes, the archive's ${id.segment_size}`
          : undefined;
  if (problem) {
    throw new BackupError('WAL_REFUSED', `the point-in-time archive on ${t.name} is of another cluster: ${problem}`, {
      hint: `Nothing was written. Give each cluster its own configured database entry (its own pitr/NAME/), or, if this server replaced the old one for good, move ${IDENTITY_FILE} and the old archive aside.`,
    });
  }
}

/** Removes the temporary objects of crashed base backups and the data of those that got no record; returns what went. */
export async function removeUnfinished(t: Target): Promise<string[]> {
  const root = t.pitr().root;
  const belongs = (name: string) => isBaseData(name) || name.endsWith(BASE_MANIFEST_SUFFIX);
  const removed = await root.cleanupTemporary(belongs);
  for (const o of (await listBaseBackups(t)).unfinished) {
    await root.delete(o.name);
    removed.push(o.name);
  }
  if (removed.length > 0) log.warn('removed what an unfinished base backup left', { target: t.name, removed: removed.join(',') });
  return removed;
}
