/**
 * Retention of the point-in-time archive: each target's base backups by its retention rules (the
 * dumps' rules: GFS, days, the minimum count), then the WAL that no kept base backup needs.
 * History files stay. Only good base backups count; nothing else is deleted here.
 */
import type { App, Target } from '../app';
import { asBackupError } from '../errors';
import { log } from '../logger';
import { applyRetention, type RetentionDecision } from '../retention/policy';
import { IDENTITY_FILE, WalArchive } from '../wal/archive';
import { baseManifestName, type BaseManifest } from '../wal/base-manifest';
import { walToRemove } from '../wal/window';
import { goodBaseBackups } from './base-list';

/** A base backup as retention sees it: dated by its start. */
export interface RetainedBase {
  id: string;
  created_at: string;
  seq: undefined;
  keep_until: null;
  base: BaseManifest;
}

export interface PitrPruneResult {
  target: string;
  decisions: RetentionDecision<RetainedBase>[];
  /** The WAL files that go (or would): how many, the first and last of them. */
  wal: { count: number; first: string | undefined; last: string | undefined };
  /** An append-only target (delete: false): nothing is deleted; its lifecycle rules expire objects. */
  appendOnly: boolean;
  error: string | undefined;
}

export async function prunePitr(app: App, opts: { dryRun: boolean; target?: string | undefined; now?: Date }): Promise<PitrPruneResult[]> {
  const targets = opts.target === undefined ? app.targets : [app.target(opts.target)];
  const out: PitrPruneResult[] = [];
  for (const t of targets) {
    if (
      !(await t
        .pitr()
        .root.stat(IDENTITY_FILE)
        .catch(() => undefined))
    )
      continue;
    out.push(await pruneTarget(app, t, opts.dryRun, opts.now ?? new Date()));
  }
  return out;
}

async function pruneTarget(app: App, t: Target, dryRun: boolean, now: Date): Promise<PitrPruneResult> {
  const appendOnly = t.pitr().root.appendOnly === true;
  const result: PitrPruneResult = { target: t.name, decisions: [], wal: { count: 0, first: undefined, last: undefined }, appendOnly, error: undefined };
  try {
    const bases = await goodBaseBackups(t);
    const items: RetainedBase[] = bases.map((b) => ({ id: b.id, created_at: b.start_time, seq: undefined, keep_until: null, base: b }));
    result.decisions = applyRetention(items, t.retention, now, app.config.timezone);
    const kept = result.decisions.filter((d) => d.action === 'keep').map((d) => d.manifest.base);
    const archive = new WalArchive(t.name, t.pitr());
    const gone = walToRemove(kept, await archive.list()).sort((a, b) => a.wal.localeCompare(b.wal));
    result.wal = { count: gone.length, first: gone[0]?.wal, last: gone[gone.length - 1]?.wal };
    if (dryRun || appendOnly) return result;
    for (const d of result.decisions.filter((x) => x.action === 'delete')) {
      // the record first: a crash between leaves data without a record, which is never recovered from and removed later
      await t.pitr().root.delete(baseManifestName(d.manifest.id));
      await t.pitr().root.delete(d.manifest.base.file);
      log.info('base backup deleted by retention', { id: d.manifest.id, target: t.name, why: d.reason });
    }
    for (const w of gone) await t.pitr().wal.delete(w.object);
    if (gone.length > 0) log.info('WAL deleted by retention', { target: t.name, count: gone.length, first: result.wal.first, last: result.wal.last });
  } catch (err) {
    result.error = asBackupError(err).message;
  }
  return result;
}
