/**
 * PostgreSQL's WAL files as the archive sees them: their names, the header of a segment, and LSN
 * arithmetic. Pure: no I/O.
 */
import { BackupError } from '../errors';

/** A 24-hex segment name: timeline, then the segment number in two halves. */
const SEGMENT = /^[0-9A-F]{24}$/;
const HISTORY = /^[0-9A-F]{8}\.history$/;
const BACKUP_LABEL = /^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$/;
const PARTIAL = /^[0-9A-F]{24}\.partial$/;

export type WalKind = 'segment' | 'history' | 'backup' | 'partial';

/** What kind of WAL file `name` is, or undefined when it is none (a path, a typo, a temporary file). */
export function walKind(name: string): WalKind | undefined {
  if (SEGMENT.test(name)) return 'segment';
  if (HISTORY.test(name)) return 'history';
  if (BACKUP_LABEL.test(name)) return 'backup';
  if (PARTIAL.test(name)) return 'partial';
  return undefined;
}

/**
 * Of the newest segment archived so far (`kept`) and one just archived (`next`, with when), the
 * newer: archived files end out of order (several pushes at once), and a history, backup or
 * partial file is not a segment. Names sort as the WAL does (timeline, then position).
 */
export function newerSegment<T extends { wal: string }>(kept: T | undefined, next: T | undefined): T | undefined {
  if (next && walKind(next.wal) === 'segment' && (!kept || next.wal >= kept.wal)) return next;
  return kept;
}

/** The timeline of a WAL file's name (every kind starts with it). */
export function timelineOf(name: string): number {
  return parseInt(name.slice(0, 8), 16);
}

/** "0/16B3740" → its 64-bit position. */
export function parseLsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new BackupError('CONFIG', `"${text}" is not an LSN`, { hint: 'An LSN looks like 0/16B3740 (as pg_current_wal_lsn() prints it).' });
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

const hex8 = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');

/** The name of the segment of `timeline` that holds `lsn`. */
export function segmentName(timeline: number, lsn: bigint, segmentSize: number): string {
  const segno = lsn / BigInt(segmentSize);
  const perLog = 0x100000000n / BigInt(segmentSize);
  return `${hex8(timeline)}${hex8(segno / perLog)}${hex8(segno % perLog)}`;
}

/** The segment number of a segment's name. */
export function segmentNumber(name: string, segmentSize: number): bigint {
  const perLog = 0x100000000n / BigInt(segmentSize);
  return BigInt(`0x${name.slice(8, 16)}`) * perLog + BigInt(`0x${name.slice(16, 24)}`);
}

/** The names of the segments of `timeline` from the one holding `start` to the one holding `stop`, both included. */
export function segmentsBetween(timeline: number, start: bigint, stop: bigint, segmentSize: number): string[] {
  const out: string[] = [];
  const size = BigInt(segmentSize);
  for (let segno = start / size; segno <= stop / size; segno++) out.push(segmentName(timeline, segno * size, segmentSize));
  return out;
}

/** What the long header at the start of every segment says. */
export interface SegmentHeader {
  /** XLOG_PAGE_MAGIC: changes with every major version's WAL format. */
  magic: number;
  timeline: number;
  /** The cluster's system identifier (pg_controldata's "Database system identifier"), as decimal text. */
  systemIdentifier: string;
  segmentSize: number;
  blockSize: number;
}

/** The major versions whose WAL this knows, by their page magic (access/xlog_internal.h). */
const MAGIC_VERSIONS: Record<number, number> = { 0xd106: 13, 0xd10d: 14, 0xd110: 15, 0xd113: 16, 0xd116: 17, 0xd118: 18 };

/** The PostgreSQL major version whose WAL has page magic `magic`, when known. */
export function versionOfMagic(magic: number): number | undefined {
  return MAGIC_VERSIONS[magic];
}

/** The WAL page magic of PostgreSQL major version `major`, when known. */
export function magicOfVersion(major: number): number | undefined {
  const hit = Object.entries(MAGIC_VERSIONS).find(([, v]) => v === major);
  return hit ? Number(hit[0]) : undefined;
}

const XLP_LONG_HEADER = 0x0002;

/**
 * Reads the long page header of a segment's first page (XLogLongPageHeaderData, little-endian
 * on the machines PostgreSQL runs on here): undefined when `buf` does not start with one.
 */
export function readSegmentHeader(buf: Buffer): SegmentHeader | undefined {
  if (buf.length < 40) return undefined;
  const magic = buf.readUInt16LE(0);
  const info = buf.readUInt16LE(2);
  if ((info & XLP_LONG_HEADER) === 0 || (magic & 0xff00) !== 0xd100) return undefined;
  return {
    magic,
    timeline: buf.readUInt32LE(4),
    systemIdentifier: buf.readBigUInt64LE(24).toString(),
    segmentSize: buf.readUInt32LE(32),
    blockSize: buf.readUInt32LE(36),
  };
}
