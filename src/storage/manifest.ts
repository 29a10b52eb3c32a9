import type { BackupFormat } from '../config';
import type { DigestMode, TableDigests } from '../digest/table-digests';

export const MANIFEST_SUFFIX = '.manifest.json';

/**
 * What basement-backup knows about one good backup. The manifest is written last, after the
 * data is durable, and deleted first: a backup exists exactly when its manifest does.
 */
export interface Manifest {
  manifest_version: 1;
  id: string;
  /** Name of the data object beside the manifest. */
  file: string;
  database: string;
  created_at: string;
  finished_at: string;
  duration_ms: number;
  size_bytes: number;
  sha256: string;
  format: BackupFormat;
  /** gzip level used, or null for pg_dump's default. */
  compression: number | null;
  pg_dump_version: string;
  server_version: string;
  label: string | null;
  keep_until: string | null;
  /** User tables the dump was checked to contain, as schema.name. */
  tables: string[];
  /** What was recorded of each table in the dump's snapshot: row counts, and content digests in mode "full". */
  digest_mode: DigestMode;
  table_digests: TableDigests;
  /** The cluster's roles (pg_dumpall --globals-only) beside the dump, or null when they could not be read. */
  roles_file: string | null;
  /** What happened on each storage target when this backup was taken (or copied there by sync). */
  targets?: Record<string, TargetState>;
  /**
   * The last restore drill of this backup. Not part of the manifest file, which is written once:
   * `verify` records it in <id>.verify.json and listing merges it in.
   */
  verification?: Verification;
  tool: { name: 'basement-backup'; version: string };
  host: string;
  trigger: 'schedule' | 'manual' | 'catch-up';
}

export interface TargetState {
  state: 'stored' | 'failed' | 'synced';
  at: string;
  error?: string;
  /** For "synced": the target it was copied from. */
  from?: string;
}

export interface Verification {
  verified_at: string;
  ok: boolean;
  /**
   * sha256 and size of the stored file matched the manifest (true) or not (false); null when the
   * drill stopped before that was known (e.g. no privilege to create the scratch database).
   */
  checksum_ok: boolean | null;
  /** Measured time to restore into an empty database: the recovery time to expect. */
  restore_ms: number | null;
  tables_checked: number;
  rows_checked: number;
  mismatches: { table: string; problem: string }[];
  error: string | null;
  /** The error's stable code (DAMAGED, RESTORE_FAILED, VERIFY_FAILED, …). */
  error_code?: string | null;
  /** Where the drill restored, host:port. */
  server: string;
}

/** "webserver_db" -> a string safe in a file name. */
export function safeName(database: string): string {
  return database.replace(/[^A-Za-z0-9_.-]/g, '_');
}

/** 2026-01-22T02:00:00.123Z -> 20260122T020000Z */
export function compactTimestamp(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

export function backupId(database: string, at: Date, seq = 0): string {
  return `${safeName(database)}_${compactTimestamp(at)}${seq > 0 ? `_${seq + 1}` : ''}`;
}

export function dataFileName(id: string, format: BackupFormat): string {
  return `${id}${format === 'custom' ? '.dump' : '.sql.gz'}`;
}

/** The record of the last restore drill, beside the (write-once) manifest. */
export function verificationFileName(id: string): string {
  return `${id}.verify.json`;
}

export function rolesFileName(id: string): string {
  return `${id}.roles.sql`;
}

export function manifestFileName(id: string): string {
  return `${id}${MANIFEST_SUFFIX}`;
}

/** True when `finalName` is a backup object (data or manifest) of `database`. */
export function belongsTo(database: string, finalName: string): boolean {
  const prefix = `${safeName(database)}_`;
  return finalName.startsWith(prefix) && /^\d{8}T\d{6}Z/.test(finalName.slice(prefix.length));
}

/** Parses a manifest, returning undefined for anything that is not a complete one. */
export function parseManifest(text: string): Manifest | undefined {
  try {
    const m = JSON.parse(text) as Partial<Manifest>;
    if (
      m.manifest_version === 1 &&
      typeof m.id === 'string' &&
      typeof m.file === 'string' &&
      typeof m.sha256 === 'string' &&
      typeof m.created_at === 'string' &&
      typeof m.size_bytes === 'number'
    ) {
      return m as Manifest;
    }
  } catch {
    // fall through
  }
  return undefined;
}

/** Is the backup protected from retention at `now`? */
export function isKept(m: Pick<Manifest, 'keep_until'>, now: Date): boolean {
  if (m.keep_until === null || m.keep_until === undefined) return false;
  if (m.keep_until === 'forever') return true;
  const t = Date.parse(m.keep_until);
  return Number.isNaN(t) ? true : t > now.getTime();
}
