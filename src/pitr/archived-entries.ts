import fs from 'node:fs';
import type { App } from '../app';
import { spoolPaths } from './spool';

/**
 * The database entries whose WAL a receiver archives (WAL_RECEIVE=on): the first entry of each
 * PostgreSQL server, as the daemon starts one receiver per server (src/daemon/wal-receivers.ts).
 * What `status` and the daemon's checks report archiving for.
 */
export function archivedEntries(apps: readonly App[]): App[] {
  if (!apps[0]?.config.pitr.receive) return [];
  const byServer = new Map<string, App>();
  for (const app of apps) {
    const key = `${app.database.db.host}:${app.database.db.port}`;
    if (!byServer.has(key)) byServer.set(key, app);
  }
  return [...byServer.values()];
}

/** What `status` shows archiving for: the receivers' entries, and any entry with a spool (`wal-receive` ran for it). */
export function archivingShown(apps: readonly App[]): App[] {
  const receivers = archivedEntries(apps);
  return apps.filter((app) => receivers.includes(app) || fs.existsSync(spoolPaths(app).dir));
}
