/**
 * A base backup of a cluster in its point-in-time archive: pg_basebackup's tar stream (with its
 * backup_manifest inside) stored through the pipeline as `ID.tar[.zst][.age]` beside the archive's
 * identity, and this record of it, `ID.base.json`, written last: a base backup without its record
 * is unfinished, and the record is written only once the WAL from its start to its stop is archived.
 */
import type { EncryptionInfo } from '../crypto/age';

export const BASE_MANIFEST_SUFFIX = '.base.json';

export interface BaseManifest {
  /** "base_20261207T010203Z": when it started, in UTC. */
  id: string;
  kind: 'base';
  /** The stored tar stream: "base_20261207T010203Z.tar.zst.age". */
  file: string;
  /** The server's clock as pg_basebackup started (before it had streamed anything), and once it had ended. */
  start_time: string;
  stop_time: string;
  /**
   * The backup's WAL range: recovery must replay at least to `stop_lsn`. Those pg_basebackup
   * reported (its backup_label and backup_manifest) when the stream was read; from a primary
   * whose stream pg_basebackup compressed, `start_lsn` is its backup_label's (the stream's head
   * is decompressed for it) and `stop_lsn` the start of the segment after the real end's, from
   * the server's position after it (wal/base-range.ts rangeAround).
   */
  start_lsn: string;
  stop_lsn: string;
  timeline: number;
  system_identifier: string;
  /** PostgreSQL's major version (the server's). */
  pg_version: number;
  segment_size: number;
  /** The WAL segments it needs, both included: from the one holding `start_lsn` to the one holding `stop_lsn`. */
  wal_first: string;
  wal_last: string;
  /** The stored object: its size and sha256 (what the targets hold), and the sha256 of the tar stream when encrypted. */
  size_bytes: number;
  sha256: string;
  plain_sha256?: string | undefined;
  /**
   * The tar stream's size before compression; when pg_basebackup compressed it from a primary (the
   * stream is not read), the size of the databases' files when it started, which the tar is close to.
   */
  source_bytes: number;
  /** "zstd:1", "gzip:6", "none". */
  compression: string;
  encryption: EncryptionInfo | null;
  duration_ms: number;
  tool_version: string;
  /** backup_manifest's own Manifest-Checksum (a sha256 of the manifest), when the stream was read. */
  backup_manifest_checksum?: string | undefined;
  /** The configured database entry it was taken for, and the targets that hold it (as this run ended). */
  database?: string | undefined;
  targets?: string[] | undefined;
}

export function baseManifestName(id: string): string {
  return `${id}${BASE_MANIFEST_SUFFIX}`;
}
