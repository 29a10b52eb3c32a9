import type { Target } from '../app';
import { BASE_MANIFEST_SUFFIX, type BaseManifest } from '../wal/base-manifest';
import { walKind } from '../wal/segment';

/** The base backups of target `t` whose record reads and whose data is there at the recorded size, newest first. */
export async function goodBaseBackups(t: Target): Promise<BaseManifest[]> {
  const root = t.pitr().root;
  const objects = await root.list();
  const sizes = new Map(objects.map((o) => [o.name, o.size]));
  const out: BaseManifest[] = [];
  for (const o of objects.filter((x) => x.name.endsWith(BASE_MANIFEST_SUFFIX))) {
    try {
      const m = JSON.parse(await root.readText(o.name)) as BaseManifest;
      const wellFormed = m.kind === 'base' && walKind(m.wal_first) === 'segment' && walKind(m.wal_last) === 'segment' && typeof m.stop_time === 'string';
      if (wellFormed && sizes.get(m.file) === m.size_bytes) out.push(m);
    } catch {
      // an unreadable record: not a base backup to recover from
    }
  }
  return out.sort((a, b) => b.stop_time.localeCompare(a.stop_time));
}
