/**
 * What a custom-format archive (`pg_dump --format=custom`) is made of, as pg_dump's own reader
 * knows it (pg_backup_archiver.h, pg_backup_custom.c): the entries and summary the streaming
 * reader gives, the problems it reports, and how the archive writes its integers.
 */

/** An entry of the table of contents that has, or should have, a data block. */
export interface ArchiveEntry {
  dumpId: number;
  /** e.g. "TABLE DATA", "BLOBS". */
  desc: string;
  /** The entry's schema, exactly as in the archive (decoded from the database's encoding). */
  namespace: string | null;
  /** The object's name (for TABLE DATA the table's name), exactly as in the archive. */
  tag: string | null;
  /** pg_dump wrote a data block for it. */
  hasData: boolean;
  /** Where in the archive the entry's data offset is (its flag byte), and the flag read there. */
  offsetField: { at: number; flag: number };
  /** Where its data block starts (its block type byte), once read. */
  dataPos?: number;
}

export interface ArchiveSummary {
  /** e.g. "1.14" */
  version: string;
  /** e.g. "gzip", "none", "lz4", "zstd" */
  compression: string;
  /** Number of entries in the table of contents. */
  tocEntries: number;
  /** The entries with data, and every TABLE DATA entry, in TOC order. */
  entries: ArchiveEntry[];
  dataBlocks: number;
  /** Bytes of (compressed) data in the data blocks, chunk headers excluded. */
  dataBytes: number;
  totalBytes: number;
  /** Bytes of an offset (after its flag byte), little-endian: see `seekableOffsets`. */
  offSize: number;
}

/** Why an archive is not complete: cut short, damaged, or of a version this reader does not know. */
export class ArchiveProblem extends Error {
  constructor(
    readonly kind: 'truncated' | 'damaged' | 'unsupported',
    message: string,
  ) {
    super(message);
    this.name = 'ArchiveProblem';
  }
}

/** Archive versions (major.minor) this reader knows; see K_VERS_* in pg_backup_archiver.h. */
export const SUPPORTED_VERSIONS = { min: [1, 12], max: [1, 16] } as const;

export const MAGIC = Buffer.from('PGDMP');
export const FORMAT_CUSTOM = 1; // archCustom
export const BLK_DATA = 1;
export const BLK_BLOBS = 3;
export const K_OFFSET_POS_NOT_SET = 1;
export const K_OFFSET_POS_SET = 2;
export const K_OFFSET_NO_DATA = 3;
const INT_MAX = 0x7fffffff;
/** Names longer than this are not kept (no table name is; PostgreSQL's limit is 63 bytes). */
export const NAME_KEEP_MAX = 64 * 1024;
export const COMPRESSION_ALGORITHMS = ['none', 'gzip', 'lz4', 'zstd'];

/** An archive version as one comparable number (K_VERS_*). */
export function vers(major: number, minor: number): number {
  return major * 256 + minor;
}

/** ReadInt: a sign byte, then intSize bytes little-endian; pg_dump writes only C ints. */
export function decodeInt(buf: Buffer, at: number, intBytes: number): number | undefined {
  const sign = buf[at]!;
  if (sign > 1) return undefined;
  let v: number;
  if (intBytes === 5) v = buf.readUInt32LE(at + 1);
  else {
    v = 0;
    for (let i = intBytes - 1; i >= 1; i--) v = v * 256 + buf[at + i]!;
  }
  // INT_MIN is written as a sign and 2^31 (large object OIDs above 2^31 are written as negative ints)
  if (v > INT_MAX + sign) return undefined;
  return sign === 1 ? -v : v;
}

/** How messages name an entry: "table public.users", "the large objects". */
export function describeEntry(e: Pick<ArchiveEntry, 'desc' | 'namespace' | 'tag'>): string {
  const name = `${e.namespace ? `${e.namespace}.` : ''}${e.tag ?? ''}`;
  if (e.desc === 'TABLE DATA') return `table ${name}`;
  if (e.desc === 'BLOBS') return e.tag && e.tag !== 'BLOBS' ? `the large objects (${e.tag})` : 'the large objects';
  return `${e.desc} ${name}`.trim();
}
