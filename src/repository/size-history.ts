import type { Manifest } from './manifest';

/** How many good backups before a backup its size is compared with (their median). */
export const SIZE_WINDOW = 7;
/** Fewer earlier good backups than this: no judgement yet. */
const SIZE_MIN_HISTORY = 3;

/** A good backup whose size is far from the usual: kept, but shown and alerted as such. */
export interface SizeAnomaly {
  id: string;
  kind: 'small' | 'large';
  size_bytes: number;
  /** The median size of the (up to 7) good backups before it. */
  median_bytes: number;
  /** size / median. */
  ratio: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The size anomalies among good backups of one database on one target, given newest first (as
 * listed): each compared with the median of the SIZE_WINDOW good ones before it. `ratio` is
 * BACKUP_SIZE_ALERT_RATIO: below ratio × median is small, above median / ratio large.
 */
export function sizeAnomalies(goodNewestFirst: readonly Manifest[], ratio: number): Map<string, SizeAnomaly> {
  const found = new Map<string, SizeAnomaly>();
  goodNewestFirst.forEach((m, i) => {
    const before = goodNewestFirst.slice(i + 1, i + 1 + SIZE_WINDOW).map((b) => b.size_bytes);
    if (before.length < SIZE_MIN_HISTORY) return;
    const med = median(before);
    if (med <= 0) return;
    const r = m.size_bytes / med;
    if (r < ratio || r > 1 / ratio) found.set(m.id, { id: m.id, kind: r < ratio ? 'small' : 'large', size_bytes: m.size_bytes, median_bytes: med, ratio: r });
  });
  return found;
}

/** The projection of a filesystem's free space from the growth of the backups kept on it. */
export interface DiskProjection {
  /** Bytes per day the kept backups (and the database, when counted) grow by (0 when they do not grow). */
  growth_bytes_per_day: number;
  /**
   * Of that, the database's own growth (pg_database_size as each backup recorded it), when
   * PostgreSQL's data directory is on the same filesystem; absent when it is not counted.
   */
  database_growth_bytes_per_day?: number;
  /** Days until the free space is used up at that growth; null when they do not grow. */
  days_to_full: number | null;
}

/** How many of the newest good backups the size trend is fitted over. */
const TREND_WINDOW = 14;

/**
 * How fast a size grows, in bytes per day, over (time in days, bytes) points: least squares;
 * 0 with fewer than 3 points, points less than an hour apart, or a size that does not grow.
 */
function growthPerDay(pts: Array<{ t: number; y: number }>): number {
  if (pts.length < 3) return 0;
  const ts = pts.map((p) => p.t);
  if ((Math.max(...ts) - Math.min(...ts)) * 24 < 1) return 0;
  const mt = ts.reduce((a, b) => a + b, 0) / pts.length;
  const my = pts.reduce((a, p) => a + p.y, 0) / pts.length;
  const sxx = pts.reduce((a, p) => a + (p.t - mt) ** 2, 0);
  const sxy = pts.reduce((a, p) => a + (p.t - mt) * (p.y - my), 0);
  return sxx === 0 ? 0 : Math.max(0, sxy / sxx);
}

const day = (m: Manifest) => Date.parse(m.created_at) / 86_400_000;

/**
 * At the growth observed over the last backups: retention keeps about as many backups as it
 * keeps now (it is bounded by age and count), so what they occupy grows by how many are kept
 * times how fast one backup grows (least squares over the newest TREND_WINDOW, in bytes per
 * day). With `countDatabase` (PostgreSQL's data directory is on the same filesystem) the
 * database's own growth, as the same backups recorded its size, is added. Needs 3 backups at
 * least an hour apart; else no projection (growth 0).
 */
export function projectDisk(goodNewestFirst: readonly Manifest[], freeBytes: number, countDatabase = false): DiskProjection {
  const window = goodNewestFirst.slice(0, TREND_WINDOW);
  const backups = growthPerDay(window.map((m) => ({ t: day(m), y: m.size_bytes }))) * goodNewestFirst.length;
  const database = countDatabase
    ? growthPerDay(window.flatMap((m) => (m.database_size_bytes === undefined ? [] : [{ t: day(m), y: m.database_size_bytes }])))
    : undefined;
  const growth = backups + (database ?? 0);
  return {
    growth_bytes_per_day: growth,
    days_to_full: growth > 0 ? Math.max(0, freeBytes) / growth : null,
    ...(database !== undefined ? { database_growth_bytes_per_day: database } : {}),
  };
}
