/**
 * The point-in-time recovery archive of one cluster on one target: its identity (which cluster
 * and WAL format it holds), and its WAL files, each stored under its name and the sha256 of its
 * content ("000000010000000000000003-<sha256>.zst.age"), so that a second push of the same file is
 * recognised, and a different one refused, by listing names alone.
 */
import { BackupError } from '../errors';
import type { Codec } from '../pipeline/codecs';
import { suffixOf } from '../pipeline/names';
import type { Storage, StoredObject } from '../storage/types';
import { versionOfMagic, type SegmentHeader } from './segment';

/**
 * Where a target keeps the point-in-time recovery archive of one configured database's cluster,
 * beside its dumps: `pitr/NAME/` holds the archive's identity and the base backups, `pitr/NAME/wal/`
 * the WAL files.
 */
export interface PitrStorage {
  root: Storage;
  wal: Storage;
}

export const IDENTITY_FILE = 'archive.json';

/** What `archive.json` records: the cluster whose WAL this archive holds. */
export interface ArchiveIdentity {
  system_identifier: string;
  /** The WAL page magic of its PostgreSQL major version. */
  wal_magic: number;
  pg_version: number | undefined;
  segment_size: number;
  created_at: string;
}

/** One archived WAL file as listed. */
export interface ArchivedWal {
  /** Its PostgreSQL name: "000000010000000000000003", "00000002.history". */
  wal: string;
  /** The sha256 of its content as PostgreSQL wrote it. */
  sha256: string;
  /** The stored object's name. */
  object: string;
  size: number;
  /** When it was archived, where the target says. */
  modified?: Date | undefined;
}

const OBJECT = /^([0-9A-F]{8}(?:[0-9A-F]{16})?(?:\.[0-9A-F]{8}\.backup|\.history|\.partial)?)-([0-9a-f]{64})((?:\.[a-z0-9]+)*)$/;

/** The stored name of WAL file `wal` with content hash `sha256` through `chain`. */
export function walObjectName(wal: string, sha256: string, chain: readonly Codec[]): string {
  return `${wal}-${sha256}${suffixOf(chain)}`;
}

/** The WAL file and hash a stored name holds, or undefined for any other object. */
export function parseWalObject(o: StoredObject): ArchivedWal | undefined {
  const m = OBJECT.exec(o.name);
  return m ? { wal: m[1]!, sha256: m[2]!, object: o.name, size: o.size, modified: o.modified } : undefined;
}

export function identityOf(h: SegmentHeader, at: Date): ArchiveIdentity {
  return {
    system_identifier: h.systemIdentifier,
    wal_magic: h.magic,
    pg_version: versionOfMagic(h.magic),
    segment_size: h.segmentSize,
    created_at: at.toISOString(),
  };
}

/** Why segment header `h` does not belong in the archive of `id`; undefined when it does. */
export function foreignProblem(h: SegmentHeader, id: ArchiveIdentity): string | undefined {
  if (h.systemIdentifier !== id.system_identifier) {
    return `it is from database system ${h.systemIdentifier}, and this archive holds the WAL of system ${id.system_identifier}`;
  }
  if (h.magic !== id.wal_magic) {
    const v = (m: number) => versionOfMagic(m) ?? `with WAL magic 0x${m.toString(16)}`;
    return `it is WAL of PostgreSQL ${v(h.magic)}, and this archive holds PostgreSQL ${v(id.wal_magic)}'s`;
  }
  if (h.segmentSize !== id.segment_size) return `its segment size is ${h.segmentSize} bytes, the archive's ${id.segment_size}`;
  return undefined;
}

/** A cluster's archive on one target. */
export class WalArchive {
  constructor(
    readonly target: string,
    readonly storage: PitrStorage,
  ) {}

  /** The archive's identity; undefined before the first WAL file or base backup. */
  async identity(): Promise<ArchiveIdentity | undefined> {
    if (!(await this.storage.root.stat(IDENTITY_FILE))) return undefined;
    const text = await this.storage.root.readText(IDENTITY_FILE);
    try {
      return JSON.parse(text) as ArchiveIdentity;
    } catch {
      throw new BackupError('DAMAGED', `${IDENTITY_FILE} on ${this.target} cannot be read`, {
        hint: `Compare it with the same file on another target, or move it aside: the next wal-push records the cluster again.`,
      });
    }
  }

  async setIdentity(id: ArchiveIdentity): Promise<void> {
    await this.storage.root.writeAtomic(IDENTITY_FILE, JSON.stringify(id, null, 2) + '\n');
  }

  /** The stored copies of WAL file `wal` (normally one; two with different hashes would be a conflict). */
  async find(wal: string): Promise<ArchivedWal[]> {
    return (await this.storage.wal.list(`${wal}-`)).flatMap((o) => {
      const a = parseWalObject(o);
      return a && a.wal === wal ? [a] : [];
    });
  }

  /** Every archived WAL file, by name. */
  async list(): Promise<ArchivedWal[]> {
    return this.listPrefix('');
  }

  /** The archived WAL files whose names start with `prefix` ("0000000100000003": that timeline and log). */
  async listPrefix(prefix: string): Promise<ArchivedWal[]> {
    return (await this.storage.wal.list(prefix)).flatMap((o) => parseWalObject(o) ?? []);
  }
}
