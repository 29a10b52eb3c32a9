import type { ZstdSource } from '../compress/compression';
import type { DbConfig } from '../config/types';
import type { AgeProgram, Identities } from '../crypto/age';
import type { PgBinaries } from '../pg/binaries';
import type { ChecksumResult } from '../pipeline/checksum';
import type { Manifest } from '../repository/manifest';
import type { Repository } from '../repository/repository';
import type { TempCommand } from './temp-dirs';

/** What restoring a stored dump into a database takes (restoreArchive). */
export interface RestoreArchiveOptions {
  bins: PgBinaries;
  /** The keys that open an encrypted backup (see `keysFor`); undefined for a plaintext one. */
  keys?: Identities | undefined;
  /** The age program that decrypts the stream (BACKUP_AGE_PROGRAM); undefined: the library. */
  age?: AgeProgram | undefined;
  /** The zstd that decompresses a `.zst` backup (app.zstd()). */
  zstd: ZstdSource;
  db: DbConfig;
  target: string;
  repo: Repository;
  manifest: Manifest;
  /** Only these tables (schema.name), with their data. */
  tables?: string[];
  /** Leave out ownership and privileges (restore drills, other servers). */
  noOwner?: boolean;
  onProgress?: (done: number, total: number, item: string) => void;
  /**
   * Called (custom format) once every table's data is loaded and only indexes, constraints and the
   * like remain: the data can be read from then on. Not called when that cannot be told.
   */
  onDataLoaded?: () => void;
  signal?: AbortSignal;
  /** Stop pg_restore or psql when it shows no progress for this long (BACKUP_STALL_MINUTES). */
  stallMs?: number;
  /** pg_restore --jobs (custom format); see restoreArchive. Default 1. */
  jobs?: number;
  /** Where a decompressed copy for --jobs may go (BACKUP_TEMP_DIR), the free space to leave there (BACKUP_MIN_FREE_MB), and whose it is. */
  temp?: { dir: string; reserveBytes: number; command: TempCommand };
}

export interface RestoreArchiveResult {
  checksum: ChecksumResult;
  /** The pg_restore jobs the restore ran with. */
  jobs: number;
  /** Why it ran with fewer jobs than asked for, when it did. */
  note?: string | undefined;
}
