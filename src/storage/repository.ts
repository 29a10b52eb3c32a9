import { log } from '../logger';
import { MANIFEST_SUFFIX, manifestFileName, parseManifest, type Manifest } from './manifest';
import type { Storage } from './types';

export interface ListedBackup {
  manifest: Manifest;
  /** Data object size as stored now; undefined when the data file is missing. */
  storedSize: number | undefined;
}

/**
 * Backups as manifests plus data objects on one Storage. Listing trusts only manifests whose
 * data object exists; deleting removes the manifest first, so a half-deleted backup is never
 * listed as good.
 */
export class Repository {
  constructor(readonly storage: Storage) {}

  async list(database?: string): Promise<ListedBackup[]> {
    const objects = await this.storage.list();
    const sizes = new Map(objects.map((o) => [o.name, o.size]));
    const out: ListedBackup[] = [];
    for (const o of objects) {
      if (!o.name.endsWith(MANIFEST_SUFFIX)) continue;
      let text: string;
      try {
        text = await this.storage.readText(o.name);
      } catch {
        continue; // deleted while listing
      }
      const manifest = parseManifest(text);
      if (!manifest) {
        log.warn('ignoring an unreadable manifest', { file: o.name, storage: this.storage.name });
        continue;
      }
      if (database !== undefined && manifest.database !== database) continue;
      out.push({ manifest, storedSize: sizes.get(manifest.file) });
    }
    return out.sort((a, b) => b.manifest.created_at.localeCompare(a.manifest.created_at) || b.manifest.id.localeCompare(a.manifest.id));
  }

  /** Good backups: a manifest and a data object of the recorded size. Newest first. */
  async listGood(database?: string): Promise<Manifest[]> {
    return (await this.list(database)).filter((b) => b.storedSize === b.manifest.size_bytes).map((b) => b.manifest);
  }

  async writeManifest(m: Manifest): Promise<void> {
    await this.storage.writeAtomic(manifestFileName(m.id), JSON.stringify(m, null, 2) + '\n');
  }

  async remove(m: Manifest): Promise<void> {
    await this.storage.delete(manifestFileName(m.id));
    await this.storage.delete(m.file);
    if (m.roles_file) await this.storage.delete(m.roles_file);
  }

  async exists(name: string): Promise<boolean> {
    return (await this.storage.list()).some((o) => o.name === name);
  }
}
