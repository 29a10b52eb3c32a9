import type pg from 'pg';
import type { DbConfig, DigestMode } from '../config/types';
import { digestTablesAcross, type DigestMethod, type TableDigests } from '../digest/table-digests';
import { listUserTables, qualified } from '../pg/catalog';
import { log } from '../logger';
import { connect } from '../pg/connection';

/**
 * The row counts (and digests) of a restored database whose data is loaded and no longer
 * changes: its user tables (those in `only`, when given) and large objects, read by up to
 * `connections` connections at once (digestTablesAcross), so that a drill's or a restore's check
 * uses the cores pg_restore's index builds leave free, and all of them once those are done. Only
 * the first connection must open: a connection limit leaves the work to fewer.
 */
export async function digestRestored(
  db: DbConfig,
  database: string,
  mode: DigestMode,
  opts: { method?: DigestMethod | undefined; only?: string[] | undefined; connections: number },
): Promise<TableDigests> {
  const clients: pg.Client[] = [];
  try {
    clients.push(await connect(db, database));
    let tables = await listUserTables(clients[0]!);
    if (opts.only && opts.only.length > 0) tables = tables.filter((t) => opts.only!.includes(qualified(t)));
    const more = Math.max(0, Math.min(opts.connections, tables.length) - 1);
    // more connections only help: one refused (a connection limit of the role or the server) leaves the work to those that opened
    const opened = await Promise.allSettled(Array.from({ length: more }, () => connect(db, database)));
    for (const o of opened) if (o.status === 'fulfilled') clients.push(o.value);
    const refused = opened.filter((o) => o.status === 'rejected');
    if (refused.length > 0) log.debug('digesting with fewer connections', { database, refused: refused.length, error: (refused[0]!.reason as Error).message });
    return await digestTablesAcross(clients, tables, mode, { method: opts.method });
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}
