/**
 * The WAL a base backup needs: its start and stop positions and timeline, read from what
 * pg_basebackup said (`-v`, when it says it) or from its own backup_label and backup_manifest,
 * and the WAL files recovery must find in the archive. Pure: no I/O.
 */
import { formatLsn, parseLsn, segmentsBetween } from './segment';
import type { TarFacts } from './base-tar';

export interface WalRange {
  start_lsn: string;
  stop_lsn: string;
  timeline: number;
  /** backup_manifest's Manifest-Checksum (sha256 of the manifest), when it was seen. */
  manifest_checksum?: string | undefined;
}

const LSN = '([0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8})';

/** "write-ahead log start point: 0/2000028 on timeline 1", "write-ahead log end point: 0/2000100" (pg_basebackup -v with WAL). */
function fromStderr(lines: readonly string[]): Partial<WalRange> {
  const out: Partial<WalRange> = {};
  for (const l of lines) {
    const s = new RegExp(`write-ahead log start point: ${LSN} on timeline (\\d+)`).exec(l);
    if (s) Object.assign(out, { start_lsn: s[1], timeline: Number(s[2]) });
    const e = new RegExp(`write-ahead log end point: ${LSN}`).exec(l);
    if (e) out.stop_lsn = e[1];
  }
  return out;
}

/** backup_label: "START WAL LOCATION: 0/2000028 (file …)", "START TIMELINE: 1". */
function fromLabel(label: string | undefined): Partial<WalRange> {
  if (!label) return {};
  const s = new RegExp(`^START WAL LOCATION: ${LSN}`, 'm').exec(label);
  const t = /^START TIMELINE: (\d+)/m.exec(label);
  return { ...(s ? { start_lsn: s[1] } : {}), ...(t ? { timeline: Number(t[1]) } : {}) };
}

/** The end of backup_manifest: `"WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }]`. */
function fromManifest(tail: string | undefined): Partial<WalRange> {
  if (!tail) return {};
  const ranges = [...tail.matchAll(new RegExp(`"Timeline":\\s*(\\d+),\\s*"Start-LSN":\\s*"${LSN}",\\s*"End-LSN":\\s*"${LSN}"`, 'g'))];
  const checksum = /"Manifest-Checksum":\s*"([0-9a-f]{64})"/.exec(tail)?.[1];
  if (ranges.length === 0) return checksum ? { manifest_checksum: checksum } : {};
  // several ranges only when a standby's timeline changed during the backup: the one that ends last counts
  const last = ranges.reduce((a, b) => (parseLsn(b[3]!) > parseLsn(a[3]!) ? b : a));
  const first = ranges.reduce((a, b) => (parseLsn(b[2]!) < parseLsn(a[2]!) ? b : a));
  return { timeline: Number(last[1]), start_lsn: first[2], stop_lsn: last[3], manifest_checksum: checksum };
}

/**
 * The backup's WAL range: pg_basebackup's own words first, then its backup_manifest, then its
 * backup_label; a string saying what is missing when the three together do not give it.
 */
export function walRangeOf(facts: Pick<TarFacts, 'label' | 'manifestTail'>, stderr: readonly string[]): WalRange | string {
  const manifest = fromManifest(facts.manifestTail);
  const r = { ...fromLabel(facts.label), ...manifest, ...fromStderr(stderr) };
  const missing = [r.start_lsn ? '' : 'start', r.stop_lsn ? '' : 'stop', r.timeline ? '' : 'timeline'].filter(Boolean);
  if (missing.length > 0) {
    const seen =
      [facts.label ? 'backup_label' : '', facts.manifestTail ? 'backup_manifest' : ''].filter(Boolean).join(' and ') ||
      'neither backup_label nor backup_manifest';
    return `its WAL ${missing.join(', ')} position${missing.length > 1 ? 's are' : ' is'} unknown (pg_basebackup did not print it, and the stream held ${seen})`;
  }
  return {
    start_lsn: formatLsn(parseLsn(r.start_lsn!)),
    stop_lsn: formatLsn(parseLsn(r.stop_lsn!)),
    timeline: r.timeline!,
    ...(manifest.manifest_checksum ? { manifest_checksum: manifest.manifest_checksum } : {}),
  };
}

/** Where a backup's WAL starts, from its backup_label; undefined when the label does not say. */
export function labelStart(label: string | undefined): { lsn: string; timeline: number } | undefined {
  const r = fromLabel(label);
  return r.start_lsn && r.timeline ? { lsn: r.start_lsn, timeline: r.timeline } : undefined;
}

/**
 * The WAL range of a base backup from a primary, from its start (its backup_label's, read at the
 * head of the stream) and the server's insert position after pg_basebackup ended (`after`). The
 * backup's end switched to a new segment, so `after` lies in a later segment than the end: the
 * range stops at the start of `after`'s segment, which needs only completed segments. The stop
 * holds the real one (backup_manifest's), at most a few segments wider on a busy server; a
 * string when the positions cannot be right.
 */
export function rangeAround(start: { lsn: string; timeline: number }, after: string | undefined, segmentSize: number): WalRange | string {
  if (!after) return 'the server went into recovery while pg_basebackup ran';
  const s = parseLsn(start.lsn);
  const a = parseLsn(after);
  const stop = a - (a % BigInt(segmentSize));
  if (stop <= s) return `the server's WAL position after pg_basebackup (${after}) is not past the segment it started in (${start.lsn})`;
  return { start_lsn: formatLsn(s), stop_lsn: formatLsn(stop), timeline: start.timeline };
}

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');

/**
 * The WAL files recovery of this backup needs from the archive: every segment from the one
 * holding its start to the one holding its last byte (a stop exactly on a segment's boundary ends
 * the one before), and, on a timeline after the first, that timeline's history file.
 */
export function walNeeded(range: WalRange, segmentSize: number): { segments: string[]; history: string | undefined } {
  const start = parseLsn(range.start_lsn);
  let stop = parseLsn(range.stop_lsn);
  if (stop > start && stop % BigInt(segmentSize) === 0n) stop -= 1n;
  return {
    segments: segmentsBetween(range.timeline, start, stop, segmentSize),
    history: range.timeline > 1 ? `${hex8(range.timeline)}.history` : undefined,
  };
}
