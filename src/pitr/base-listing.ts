/**
 * The base backups on one target: their records (`ID.base.json`), newest first, each checked
 * against its data (there, and of the recorded size), and the data that has no record yet: a
 * base backup being written, or one a crash left unfinished (the next `basebackup` removes it).
 */
import type { Target } from '../app';
import { asBackupError } from '../errors';
import type { StoredObject } from '../storage/types';
import { BASE_MANIFEST_SUFFIX, type BaseManifest } from '../wal/base-manifest';

/** Every object of a base backup starts so: "base_20261207T010203Z.tar.zst", "base_20261207T010203Z.base.json". */
export const BASE_PREFIX = 'base_';
const BASE_ID = /^base_\d{8}T\d{6}Z(?:_\d+)?/;
const BASE_DATA = /^base_\d{8}T\d{6}Z(?:_\d+)?\.tar(?:\.[a-z0-9]+)*$/;

/** The id of a base backup's object ("base_20261207T010203Z"), or undefined for any other name. */
export function baseIdOf(name: string): string | undefined {
  return BASE_ID.exec(name)?.[0];
}

/** A base backup's data object (its tar stream, through the pipeline). */
export function isBaseData(name: string): boolean {
  return BASE_DATA.test(name);
}

export interface ListedBase {
  id: string;
  target: string;
  /** Undefined when the record cannot be read. */
  manifest: BaseManifest | undefined;
  /** Why it cannot be used: its data is missing or of another size, its record unreadable. */
  damage: string | undefined;
}

export interface BaseListing {
  /** Newest first (by start time). */
  backups: ListedBase[];
  /** Data objects without a record. */
  unfinished: StoredObject[];
}

/** The base backups on target `t`, read from its point-in-time archive. */
export async function listBaseBackups(t: Target): Promise<BaseListing> {
  const root = t.pitr().root;
  const objects = await root.list(BASE_PREFIX);
  const byName = new Map(objects.map((o) => [o.name, o]));
  const records = objects.filter((o) => o.name.endsWith(BASE_MANIFEST_SUFFIX) && baseIdOf(o.name) !== undefined);
  const backups = await Promise.all(
    records.map(async (o): Promise<ListedBase> => {
      const id = baseIdOf(o.name)!;
      let manifest: BaseManifest;
      try {
        manifest = JSON.parse(await root.readText(o.name)) as BaseManifest;
      } catch (err) {
        const why = err instanceof SyntaxError ? 'its record is not valid JSON' : `its record cannot be read (${asBackupError(err).message})`;
        return { id, target: t.name, manifest: undefined, damage: why };
      }
      const data = byName.get(manifest.file);
      const damage =
        typeof manifest.file !== 'string' || baseIdOf(manifest.file) !== id || !isBaseData(manifest.file)
          ? `its record names an unexpected data file (${String(manifest.file)})`
          : data === undefined
            ? `its data ${manifest.file} is missing`
            : data.size !== manifest.size_bytes
              ? `its data ${manifest.file} is ${data.size} bytes, the record says ${manifest.size_bytes}`
              : undefined;
      return { id, target: t.name, manifest, damage };
    }),
  );
  const recorded = new Set(records.map((o) => baseIdOf(o.name)));
  const unfinished = objects.filter((o) => isBaseData(o.name) && !recorded.has(baseIdOf(o.name)));
  // an id is its start time (and a number after it when two started in one second)
  backups.sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  return { backups, unfinished };
}
