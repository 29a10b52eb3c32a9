import type { BackupFormat, DigestMode } from '../config/types';
import type { EncryptionInfo } from '../crypto/age';
import type { DigestMethod, TableDigests } from '../digest/table-digests';
import type { DataOffsets } from '../dump/archive-offsets';
import { decodePipe } from '../pipeline/by-hand';
import { chainFor, suffixOf } from '../pipeline/names';
import type { ServerOrigin } from './origin';

export const MANIFEST_SUFFIX = '.manifest.json';

/**
 * What basement-backup knows about one good backup. The manifest is written last, after the
 * data is durable, and deleted first: a backup exists exactly when its manifest does.
 */
export interface Manifest extends ServerOrigin {
  manifest_version: 1;
  id: string;
  /**
   * Per database, one more than the highest sequence number of any earlier backup on any target:
   * the order in which backups were taken, whatever the clock said. Absent in backups taken before
   * it was introduced; those sort before every numbered one, by created_at.
   */
  seq?: number;
  /** Name of the data object beside the manifest. */
  file: string;
  database: string;
  created_at: string;
  finished_at: string;
  duration_ms: number;
  size_bytes: number;
  sha256: string;
  format: BackupFormat;
  /**
   * How the data is compressed: "zstd:1", "gzip:6", "gzip" (pg_dump's default level), "lz4",
   * "none". Before zstd: a gzip level, or null for pg_dump's default. The data file's name says
   * what must be undone before pg_restore or psql reads it (`.zst`, `.gz`).
   */
  compression: string | number | null;
  /** The command that restores the data file with standard tools (in the file's directory), e.g. `zstd -dc FILE | pg_restore -d NEWDB`. */
  restore_command?: string;
  /** Size of pg_dump's output before compression: what a decompressed copy needs on disk. */
  dump_size_bytes?: number;
  /** pg_database_size when the backup was taken: the database's own growth, for the disk projection. */
  database_size_bytes?: number;
  /**
   * The server's data directory, when the role could read it (superuser or pg_read_all_settings):
   * the disk projection counts the database's growth when it shares a local target's filesystem.
   */
  data_directory?: string;
  /**
   * Custom format: where pg_dump's data blocks are, as the archive check found them while the
   * backup streamed: the offsets' size and, per entry with data, [the position of its offset
   * field in the table of contents, the position of its data block]. pg_dump cannot write them
   * into an archive it writes to a pipe; restore writes them into a decompressed copy, so that
   * pg_restore --jobs seeks to its tables' data. Absent before they were recorded (or with
   * more than 100,000 tables): the copy is then read to find them.
   */
  data_offsets?: DataOffsets;
  pg_dump_version: string;
  server_version: string;
  label: string | null;
  keep_until: string | null;
  /** User tables the dump was checked to contain, as schema.name. */
  tables: string[];
  /** What was recorded of each table in the dump's snapshot: row counts, and content digests in mode "full". */
  digest_mode: DigestMode;
  /** How the content digests were computed (mode "full"); absent: `copy`, as before the method was recorded. */
  digest_method?: DigestMethod;
  table_digests: TableDigests;
  /** The cluster's roles (pg_dumpall --globals-only) beside the dump, or null when they could not be read. */
  roles_file: string | null;
  /**
   * How the data and roles files are encrypted; absent or null: they are not. `sha256` and
   * `size_bytes` are then those of the stored (encrypted) bytes, so checksums and sync need no key.
   */
  encryption?: EncryptionInfo | null;
  /** sha256 of the data before encryption (what pg_dump wrote), checked after decrypting. */
  plain_sha256?: string;
  /** What happened on each storage target when this backup was taken (or copied there by sync). */
  targets?: Record<string, TargetState>;
  /**
   * The last restore drill of this backup. Not part of the manifest file, which is written once:
   * `verify` records it in <id>.verify.json and listing merges it in.
   */
  verification?: Verification;
  /**
   * A pin set after the backup was taken (`basement-backup pin`/`unpin`). Not part of the manifest
   * file either: it is <id>.pin.json beside it, and when present it replaces `keep_until`.
   */
  pin?: Pin;
  tool: { name: 'basement-backup'; version: string };
  host: string;
  trigger: 'schedule' | 'manual' | 'catch-up';
}

export interface TargetState {
  state: 'stored' | 'failed' | 'synced';
  at: string;
  /** The data object's ETag on that target, when the target has one: retention confirms it before relying on the copy. */
  etag?: string;
  error?: string;
  /** For "synced": the target it was copied from. */
  from?: string;
}

/** <id>.pin.json: how long retention must keep a backup, set after it was taken. */
export interface Pin {
  /** An ISO date, "forever", or null: unpinned (it then overrides a `keep_until` the backup was taken with). */
  keep_until: string | null;
  note: string | null;
  pinned_at: string;
  /** "all": pinned on every target, and sync carries it to the targets it copies the backup to; "target": on this target only. */
  scope: 'all' | 'target';
  host: string;
}

export interface Verification {
  /** A restore drill (`verify`), or a check of the stored bytes only (`verify --checksums-only`, retention). */
  kind?: 'drill' | 'checksum';
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
  /**
   * Set when the content could not be drilled, only the stored bytes checked: an encrypted backup
   * where no identity is configured ("not drilled: no identity here").
   */
  content?: string;
}

/**
 * Error codes of a check that prove the backup itself bad (its bytes, or what they restore to). A
 * check that could not run (no privilege, a server down, storage unreachable) proves nothing.
 */
export const DAMAGING_CODES: readonly string[] = ['DAMAGED', 'VERIFY_FAILED', 'RESTORE_FAILED'];

/** Does this record of a check say the backup is damaged? */
export function provesDamage(v: Verification | undefined): boolean {
  return v !== undefined && !v.ok && (v.error_code === undefined || v.error_code === null || DAMAGING_CODES.includes(v.error_code));
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

/** How the stored stream of a data file is compressed, shown in its name: a compression codec of the pipeline (zstd `.zst`, gzip `.gz`), or none. */
export type StoredCompression = string;

/**
 * The data object's name: `<id>.dump` or `<id>.sql`, then the suffixes of the pipeline's codecs it
 * goes through (`.zst` or `.gz` when the stream is compressed, then `.age` when encrypted). (Before
 * zstd, a plain dump was always `.sql.gz`: the default.)
 */
export function dataFileName(id: string, format: BackupFormat, encrypted = false, stream: StoredCompression = format === 'plain' ? 'gzip' : 'none'): string {
  return `${id}${format === 'custom' ? '.dump' : '.sql'}${suffixOf(chainFor(stream, encrypted))}`;
}

/**
 * How the data file `file` is restored with standard tools, in its directory, into a new database
 * NEWDB: what the manifest records in `restore_command` and the README documents. The commands that
 * undo its codecs come from the pipeline's list.
 */
export function restoreCommand(file: string, format: BackupFormat): string {
  const steps = decodePipe(file, file, 'IDENTITY_FILE');
  if (steps.length > 0) steps.push(format === 'custom' ? 'pg_restore -d NEWDB' : 'psql -v ON_ERROR_STOP=1 -d NEWDB');
  else steps.push(format === 'custom' ? `pg_restore -d NEWDB ${file}` : `psql -v ON_ERROR_STOP=1 -d NEWDB -f ${file}`);
  return `createdb NEWDB && ${steps.join(' | ')}`;
}

/** The record of the last restore drill, beside the (write-once) manifest. */
export function verificationFileName(id: string): string {
  return `${id}.verify.json`;
}

export function pinFileName(id: string): string {
  return `${id}.pin.json`;
}

export function rolesFileName(id: string, encrypted = false): string {
  return `${id}.roles.sql${suffixOf(chainFor('none', encrypted))}`;
}

/**
 * New names for backup `m`'s data and roles when they are rewritten in place (`reencrypt`): a
 * generation number after the id ("<id>.key2.dump.age"), so the new objects never overwrite the
 * ones the manifest still names until it is swapped.
 */
export function rewrittenNames(m: Manifest): { file: string; roles: string | null } {
  const rest = m.file.slice(m.id.length);
  const gen = Number(/^\.key(\d+)\./.exec(rest)?.[1] ?? 1) + 1;
  const encrypted = suffixOf(chainFor('none', true));
  // what the name says of the data (".dump.zst", ".sql.gz"), without the generation and the encryption
  const named = rest.replace(/^\.key\d+/, '');
  const kind = named.endsWith(encrypted) ? named.slice(0, -encrypted.length) : named;
  return {
    file: `${m.id}.key${gen}${kind}${encrypted}`,
    roles: m.roles_file ? `${m.id}.key${gen}.roles.sql${encrypted}` : null,
  };
}

/** Is `name` a roles file (plain or encrypted)? */
export function isRolesFile(name: string): boolean {
  return name.endsWith('.roles.sql') || name.endsWith(`.roles.sql${suffixOf(chainFor('none', true))}`);
}

export function manifestFileName(id: string): string {
  return `${id}${MANIFEST_SUFFIX}`;
}

/** True when `finalName` is a backup object (data or manifest) of `database`. */
export function belongsTo(database: string, finalName: string): boolean {
  const prefix = `${safeName(database)}_`;
  return finalName.startsWith(prefix) && /^\d{8}T\d{6}Z/.test(finalName.slice(prefix.length));
}

/** The backup id an object of `database` belongs to: "<db>_20260122T020000Z[_2]" of "<db>_20260122T020000Z[_2].dump". */
export function idOf(database: string, finalName: string): string | undefined {
  if (!belongsTo(database, finalName)) return undefined;
  const prefix = safeName(database);
  const m = /^_\d{8}T\d{6}Z(?:_\d+)?/.exec(finalName.slice(prefix.length));
  return m ? prefix + m[0] : undefined;
}

/** When the id says the backup was taken: 20260122T020000Z -> 2026-01-22T02:00:00Z. */
export function idTime(id: string): number {
  const m = /_(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z(?:_\d+)?$/.exec(id);
  return m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) : NaN;
}

/**
 * Newest first: by sequence number; backups without one (taken before it existed) after every
 * numbered one, by created_at, then id.
 */
export function newestFirst(a: Pick<Manifest, 'seq' | 'created_at' | 'id'>, b: Pick<Manifest, 'seq' | 'created_at' | 'id'>): number {
  const sa = a.seq ?? -1;
  const sb = b.seq ?? -1;
  if (sa !== sb) return sb - sa;
  return b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id);
}

/** How far ahead of the clock a backup's date may be before it is flagged (clocks of two machines, NTP steps). */
export const FUTURE_TOLERANCE_MS = 5 * 60_000;

/** Is the backup dated more than a few minutes ahead of `now` (the clock was wrong when it was taken, or is now)? */
export function isFutureDated(m: Pick<Manifest, 'created_at'>, now: Date): boolean {
  return Date.parse(m.created_at) > now.getTime() + FUTURE_TOLERANCE_MS;
}

/** Parses a manifest, returning undefined for anything that is not a complete one. */
export function parseManifest(text: string): Manifest | undefined {
  const r = readManifest(text);
  return 'manifest' in r ? r.manifest : undefined;
}

/** Parses a manifest, or says what is wrong with it ("not valid JSON", "no sha256", …). */
export function readManifest(text: string, expectedId?: string): { manifest: Manifest } | { problem: string } {
  let m: Partial<Manifest>;
  try {
    m = JSON.parse(text) as Partial<Manifest>;
  } catch {
    return { problem: text.trim() === '' ? 'the manifest is empty' : 'the manifest is not valid JSON' };
  }
  if (!m || typeof m !== 'object') return { problem: 'the manifest is not a JSON object' };
  if (m.manifest_version !== 1) return { problem: `unknown manifest_version ${JSON.stringify(m.manifest_version)}` };
  for (const [key, type] of [
    ['id', 'string'],
    ['file', 'string'],
    ['sha256', 'string'],
    ['created_at', 'string'],
    ['size_bytes', 'number'],
  ] as const) {
    if (typeof m[key] !== type) return { problem: `the manifest has no valid "${key}"` };
  }
  if (expectedId !== undefined && m.id !== expectedId) return { problem: `the manifest names backup ${m.id}, not ${expectedId}` };
  // the data file sits beside the manifest: a name with a path in it is never followed
  if (!m.file!.startsWith(m.id!) || /[/\\]/.test(m.file!)) return { problem: `the manifest names an unexpected data file "${m.file}"` };
  if (typeof m.roles_file === 'string' && (!m.roles_file.startsWith(m.id!) || /[/\\]/.test(m.roles_file)))
    return { problem: `the manifest names an unexpected roles file "${m.roles_file}"` };
  if (m.seq !== undefined && !(Number.isInteger(m.seq) && m.seq > 0)) return { problem: `the manifest has an invalid "seq"` };
  if (m.encryption && (m.encryption.format !== 'age' || !Array.isArray(m.encryption.recipients)))
    return { problem: `the manifest has an unknown "encryption" (${JSON.stringify(m.encryption).slice(0, 60)})` };
  return { manifest: m as Manifest };
}

/** How long the backup is pinned: its pin's date when it has a pin (null when unpinned), else the `--keep` it was taken with. */
export function keepUntilOf(m: Pick<Manifest, 'keep_until' | 'pin'>): string | null {
  return m.pin ? m.pin.keep_until : (m.keep_until ?? null);
}

/** Is the backup protected from retention at `now`? A date that cannot be read protects it. */
export function isKept(m: Pick<Manifest, 'keep_until' | 'pin'>, now: Date): boolean {
  const until = keepUntilOf(m);
  if (until === null) return false;
  if (until === 'forever') return true;
  const t = Date.parse(until);
  return Number.isNaN(t) ? true : t > now.getTime();
}

/** A pin object's content, or why it cannot be used. */
export function readPin(text: string): Pin | undefined {
  try {
    const p = JSON.parse(text) as Partial<Pin>;
    if (p && typeof p === 'object' && (p.keep_until === null || typeof p.keep_until === 'string') && typeof p.pinned_at === 'string') {
      return {
        keep_until: p.keep_until,
        note: typeof p.note === 'string' ? p.note : null,
        pinned_at: p.pinned_at,
        scope: p.scope === 'target' ? 'target' : 'all',
        host: String(p.host ?? ''),
      };
    }
  } catch {
    // below
  }
  return undefined;
}
