import type pg from 'pg';
import type { DbConfig } from '../config/types';
import { BackupError } from '../errors';
import { log } from '../logger';
import { connect } from '../pg/connection';
import { systemIdentifier } from '../pg/origin';
import type { Manifest } from '../repository/manifest';

/**
 * Why backup `m` must not be restored to `client`'s server unless the operator says so: it was
 * taken on another PostgreSQL server (another system identifier). Undefined when it was taken on
 * this one, or when either side does not say (an older backup, a role that may not read it).
 */
export async function otherServer(client: pg.Client, m: Manifest, db: DbConfig, command: string): Promise<BackupError | undefined> {
  if (m.system_identifier === undefined) return undefined;
  const here = await systemIdentifier(client);
  if (here === undefined || here === m.system_identifier) return undefined;
  return new BackupError(
    'REFUSED',
    `backup ${m.id} was taken on another PostgreSQL server (system identifier ${m.system_identifier}) than ${db.host}:${db.port} (${here})`,
    {
      hint:
        `Nothing was changed. Check --db and the storage targets: another server's backups may share this one's (BACKUP_CONFIG_FILE). ` +
        `If this server replaced the one the backup was taken on (a new server, a fresh initdb, pg_upgrade), add --from-other-server to \`basement-backup ${command}\`.`,
    },
  );
}

/** Throws when `m` is from another server than `client`'s and the operator did not allow it. */
export async function refuseOtherServer(client: pg.Client, m: Manifest, db: DbConfig, allowed: boolean | undefined): Promise<void> {
  const refusal = allowed ? undefined : await otherServer(client, m, db, 'restore');
  if (refusal) throw refusal;
}

/** `restore --dry-run`: the refusal the restore would meet, as a warning beside the plan. */
export async function otherServerWarning(client: pg.Client, m: Manifest, db: DbConfig, allowed: boolean | undefined): Promise<string[]> {
  const refusal = allowed ? undefined : await otherServer(client, m, db, 'restore');
  return refusal ? [`the restore will be refused: ${refusal.message}\n  fix: ${refusal.hint ?? ''}`] : [];
}

/**
 * A drill restores into a scratch database on the drill server, which may be another server on
 * purpose: the backup is compared with the server it backs up (DB_*). When that one cannot be
 * asked (it is down: drills are most wanted then), the drill goes ahead, and says so in the log.
 */
export async function refuseOtherServerDrill(db: DbConfig, m: Manifest, allowed: boolean | undefined): Promise<void> {
  if (allowed || m.system_identifier === undefined) return;
  let client: pg.Client;
  try {
    client = await connect(db);
  } catch (err) {
    log.warn('could not ask the backed-up server which server it is; the backup is drilled without that check', {
      id: m.id,
      error: (err as Error).message,
    });
    return;
  }
  try {
    const refusal = await otherServer(client, m, db, 'verify');
    if (refusal) throw refusal;
  } finally {
    await client.end().catch(() => undefined);
  }
}
