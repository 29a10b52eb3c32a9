/**
 * What the point-in-time archive of one target can recover to (the recovery window), and which
 * WAL files retention may remove. Pure: from the base backups' records and the WAL listing.
 */
import type { ArchivedWal } from './archive';
import type { BaseManifest } from './base-manifest';
import { segmentName, segmentNumber, walKind } from './segment';

export interface RecoveryWindow {
  /** The earliest point recovery can reach: the end of the oldest base backup whose WAL is complete. */
  earliest: { time: string; base: string } | undefined;
  /** The newest: when the last segment of an unbroken run of WAL from a base backup was archived. */
  latest: { time: string | undefined; wal: string } | undefined;
  /** Segments missing between archived ones, after the oldest base backup: recovery cannot pass them. */
  gaps: { from: string; to: string }[];
}

/** The segments of `timeline` in the archive, by segment number. */
function segmentsOf(wal: readonly ArchivedWal[], timeline: number, size: number): Map<bigint, ArchivedWal> {
  const out = new Map<bigint, ArchivedWal>();
  for (const w of wal) if (walKind(w.wal) === 'segment' && parseInt(w.wal.slice(0, 8), 16) === timeline) out.set(segmentNumber(w.wal, size), w);
  return out;
}

/** `bases` newest first; `wal` every archived file of the target. */
export function recoveryWindow(bases: readonly BaseManifest[], wal: readonly ArchivedWal[]): RecoveryWindow {
  const window: RecoveryWindow = { earliest: undefined, latest: undefined, gaps: [] };
  const oldestFirst = [...bases].reverse();
  for (const b of oldestFirst) {
    const segs = segmentsOf(wal, b.timeline, b.segment_size);
    let n = segmentNumber(b.wal_first, b.segment_size);
    if (!segs.has(n)) continue;
    while (segs.has(n + 1n)) n++;
    if (n < segmentNumber(b.wal_last, b.segment_size)) continue; // its own WAL is not all there: it cannot be recovered
    window.earliest ??= { time: b.stop_time, base: b.id };
    const end = segs.get(n)!;
    if (!window.latest || end.wal > window.latest.wal) window.latest = { time: end.modified?.toISOString(), wal: end.wal };
  }
  const oldest = oldestFirst[0];
  if (oldest) window.gaps = gapsAfter(wal, oldest);
  return window;
}

/** The runs of missing segments on each timeline between the oldest base backup's first and the newest archived. */
function gapsAfter(wal: readonly ArchivedWal[], oldest: BaseManifest): { from: string; to: string }[] {
  const size = oldest.segment_size;
  const start = segmentNumber(oldest.wal_first, size);
  const timelines = new Set(wal.filter((w) => walKind(w.wal) === 'segment').map((w) => parseInt(w.wal.slice(0, 8), 16)));
  const gaps: { from: string; to: string }[] = [];
  for (const tl of [...timelines].sort((a, b) => a - b)) {
    const nums = [...segmentsOf(wal, tl, size).keys()].filter((n) => n >= start).sort((a, b) => (a < b ? -1 : 1));
    for (let i = 1; i < nums.length; i++) {
      if (nums[i]! - nums[i - 1]! > 1n)
        gaps.push({ from: segmentName(tl, (nums[i - 1]! + 1n) * BigInt(size), size), to: segmentName(tl, (nums[i]! - 1n) * BigInt(size), size) });
    }
  }
  return gaps;
}

/**
 * The WAL files retention removes once only `kept` base backups stay: every segment (and
 * .backup, .partial) before the first the oldest kept base backup needs, on any timeline. History
 * files always stay (they are small, and a later recovery across timelines needs them); with no
 * base backup kept, nothing goes.
 */
export function walToRemove(kept: readonly BaseManifest[], wal: readonly ArchivedWal[]): ArchivedWal[] {
  if (kept.length === 0) return [];
  const oldest = kept.reduce((a, b) => (segmentNumber(a.wal_first, a.segment_size) <= segmentNumber(b.wal_first, b.segment_size) ? a : b));
  const size = oldest.segment_size;
  const first = segmentNumber(oldest.wal_first, size);
  return wal.filter((w) => walKind(w.wal) !== 'history' && segmentNumber(w.wal.slice(0, 24), size) < first);
}
