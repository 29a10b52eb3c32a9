import type { App, Target } from '../app';
import { asBackupError } from '../errors';
import { IDENTITY_FILE, WalArchive } from '../wal/archive';
import { walKind } from '../wal/segment';
import { recoveryWindow } from '../wal/window';
import { goodBaseBackups } from './base-list';

/** One target's point-in-time archive as `status` shows it. */
export interface PitrWindowStatus {
  target: string;
  base_backups: number;
  wal_files: number;
  /** The earliest point recovery can reach (the end of the oldest recoverable base backup); null: none can be recovered. */
  earliest: string | null;
  /** When the last segment of the unbroken WAL after a base backup was archived; null: none. */
  latest: string | null;
  latest_wal: string | null;
  gaps: { from: string; to: string }[];
  /** The newest segment the target holds (on any timeline), and when it was stored; null: none. */
  newest_wal: string | null;
  newest_wal_at: string | null;
  /** The newest good base backup and when it ended; null: none. */
  newest_base: string | null;
  newest_base_at: string | null;
  /** Why the archive could not be read; null when it could. */
  error: string | null;
}

/** The recovery window of every target that has a point-in-time archive (none: an empty list). */
export async function pitrWindows(app: App): Promise<PitrWindowStatus[]> {
  const out = await Promise.all(app.targets.map((t) => windowOf(t)));
  return out.filter((w): w is PitrWindowStatus => w !== undefined);
}

async function windowOf(t: Target): Promise<PitrWindowStatus | undefined> {
  try {
    if (!(await t.pitr().root.stat(IDENTITY_FILE))) return undefined;
    const [bases, wal] = await Promise.all([goodBaseBackups(t), new WalArchive(t.name, t.pitr()).list()]);
    const w = recoveryWindow(bases, wal);
    const segments = wal.filter((x) => walKind(x.wal) === 'segment');
    const newest = segments.reduce<(typeof segments)[number] | undefined>((m, x) => (!m || x.wal > m.wal ? x : m), undefined);
    return {
      target: t.name,
      base_backups: bases.length,
      wal_files: wal.length,
      earliest: w.earliest?.time ?? null,
      latest: w.latest?.time ?? null,
      latest_wal: w.latest?.wal ?? null,
      gaps: w.gaps,
      newest_wal: newest?.wal ?? null,
      newest_wal_at: newest?.modified?.toISOString() ?? null,
      newest_base: bases[0]?.id ?? null,
      newest_base_at: bases[0]?.stop_time ?? null,
      error: null,
    };
  } catch (err) {
    const nothing = { newest_wal: null, newest_wal_at: null, newest_base: null, newest_base_at: null };
    return {
      target: t.name,
      base_backups: 0,
      wal_files: 0,
      earliest: null,
      latest: null,
      latest_wal: null,
      gaps: [],
      ...nothing,
      error: asBackupError(err).message,
    };
  }
}
