import type { App } from '../app';
import { isFutureDated } from '../storage/manifest';
import type { Listing, Repository } from '../storage/repository';

export interface ListOptions {
  /** The target to list (the first when undefined). */
  target?: string;
  /** Also the objects no manifest owns (ORPHAN rows). */
  all?: boolean;
  now?: Date;
}

/** `list --json`: the backups of the configured database on one target, newest first, as rows for scripts. */
export async function listRows(app: App, opts: ListOptions = {}): Promise<object[]> {
  const repo = app.target(opts.target).repo;
  return rowsOf(repo, await repo.scan(app.config.db.database), opts.all === true, opts.now ?? new Date());
}

/** Each manifest with its state and the last drill flat, then the orphans when `all`. */
function rowsOf(repo: Repository, { backups, orphans }: Listing, all: boolean, now: Date): object[] {
  return [
    ...backups.map((b) => ({
      ...(b.manifest ?? { id: b.id }),
      file: b.manifest ? (repo.localPath(b.manifest.file) ?? b.manifest.file) : null,
      state: b.damage === undefined ? 'ok' : 'DAMAGED',
      damage: b.damage ?? null,
      future_dated: b.manifest ? isFutureDated(b.manifest, now) : false,
      // the last restore drill, also flat for scripts (the full record is in "verification")
      verified_at: b.manifest?.verification?.verified_at ?? null,
      verify_ok: b.manifest?.verification?.ok ?? null,
      restore_ms: b.manifest?.verification?.restore_ms ?? null,
    })),
    ...(all ? orphans.map((o) => ({ file: repo.localPath(o.name) ?? o.name, size_bytes: o.size, state: 'ORPHAN' })) : []),
  ];
}
