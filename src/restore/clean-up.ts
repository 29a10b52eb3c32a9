import type pg from 'pg';
import type { App } from '../app';
import { removeTempLeftovers } from './temp-dirs';
import { connectAdmin, dropStaleScratch } from './scratch';
import { dropUnfinishedRestores } from './unfinished';

/**
 * What a killed restore of the database left, removed by the next restore (under the backup
 * lock; `admin` on the database's server, else a connection of its own): the temporary directories of killed restores and
 * drills in BACKUP_TEMP_DIR, and the databases it left half-restored (marked, their process gone).
 */
export async function removeRestoreLeftovers(app: App, admin?: pg.Client): Promise<void> {
  removeTempLeftovers(app.config.tempDir);
  const client = admin ?? (await connectAdmin(app.database.db));
  try {
    await dropUnfinishedRestores(client, app.database.db.database);
  } finally {
    if (!admin) await client.end().catch(() => undefined);
  }
}

/**
 * What a killed drill left, removed by the next drill (under the verify lock): the temporary
 * directories in BACKUP_TEMP_DIR, and the scratch databases on the drill server.
 */
export async function removeDrillLeftovers(app: App): Promise<void> {
  removeTempLeftovers(app.config.tempDir);
  await dropStaleScratch(app.database.verifyDb, app.database.db.database);
}
