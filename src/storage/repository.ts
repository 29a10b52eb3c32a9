import { BackupError } from '../errors';
import { log } from '../logger';
import { MANIFEST_SUFFIX, manifestFileName, parseManifest, verificationFileName, type Manifest, type Verification } from './manifest';
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
      if (sizes.has(verificationFileName(manifest.id))) {
        try {
          manifest.verification = JSON.parse(await this.storage.readText(verificationFileName(manifest.id))) as Verification;
        } catch {
          // an unreadable drill record only means "not verified"
        }
      }
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
    await this.storage.delete(verificationFileName(m.id));
  }

  async writeVerification(id: string, v: Verification): Promise<void> {
    await this.storage.writeAtomic(verificationFileName(id), JSON.stringify(v, null, 2) + '\n');
  }

  /** The good backup `idOrLatest` names ("latest": the newest), or a NOT_FOUND error listing what there is. */
  async find(database: string, idOrLatest: string): Promise<Manifest> {
    const good = await this.listGood(database);
    const found = idOrLatest === 'latest' ? good[0] : good.find((m) => m.id === idOrLatest || m.file === idOrLatest);
    if (found) return found;
    const known = good.slice(0, 5).map((m) => m.id);
    throw new BackupError(
      'NOT_FOUND',
      idOrLatest === 'latest'
        ? `there is no good backup of ${database} in ${this.storage.location}`
        : `no good backup "${idOrLatest}" of ${database} in ${this.storage.location}`,
      {
        hint: known.length > 0 ? `\`basement-backup list\` shows them; the newest: ${known.join(', ')}.` : 'Take one with `basement-backup backup`.',
      },
    );
  }
}
