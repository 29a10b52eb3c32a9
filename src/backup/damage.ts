import type { App } from '../app';
import { BackupError } from '../errors';
import type { ListedBackup } from '../repository/repository';

/**
 * One alert per damaged backup, the first time any backup, prune or check finds it (a damaged
 * backup stays listed until someone removes it; one mail is enough). Never throws.
 */
export async function alertDamaged(app: App, found: { target: string; damaged: ListedBackup[] }[]): Promise<void> {
  const database = app.database.db.database;
  const key = (target: string, id: string) => `${target}/${id}`;
  const known = new Set(app.state.read(database).damaged_alerted ?? []);
  const current = found.flatMap((f) => f.damaged.map((b) => ({ target: f.target, b, key: key(f.target, b.id) })));
  const fresh = current.filter((c) => !known.has(c.key));
  if (fresh.length === 0) return;
  const sent = await app.alerter.send({
    kind: 'problem',
    what: `${fresh.length === 1 ? 'A damaged backup' : `${fresh.length} damaged backups`} of ${app.database.name} found`,
    error: new BackupError('DAMAGED', fresh.map((c) => `${c.b.id} on ${c.target}: ${c.b.damage}`).join('\n'), {
      hint:
        'A damaged backup never counts as good: `latest`, `status` and retention skip it, and retention never deletes it. ' +
        '`basement-backup list` shows why; check the disk or bucket; `basement-backup verify ID` checks it again; ' +
        '`basement-backup prune --damaged` removes damaged backups once you have looked at them.',
    }),
  });
  if (!sent) return;
  // remember what was mailed; forget what is no longer damaged on the targets looked at, so the list stays short
  const still = new Set(current.map((c) => c.key));
  const scanned = new Set(found.map((f) => f.target));
  app.state.update(database, (s) => ({
    ...s,
    damaged_alerted: [...new Set([...(s.damaged_alerted ?? []), ...fresh.map((c) => c.key)])].filter(
      (k) => still.has(k) || !scanned.has(k.slice(0, k.indexOf('/'))),
    ),
  }));
}
