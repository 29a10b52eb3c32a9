import type pg from 'pg';
import { systemIdentifier } from './origin';

export interface TableRef {
  schema: string;
  name: string;
}

export function qualified(t: TableRef): string {
  return `${t.schema}.${t.name}`;
}

/** Ordinary user tables whose data pg_dump must include (extension-owned tables excluded). */
export async function listUserTables(client: pg.Client): Promise<TableRef[]> {
  const res = await client.query<TableRef>(`
    SELECT n.nspname AS schema, c.relname AS name
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r'
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\\_toast%'
       AND n.nspname NOT LIKE 'pg\\_temp%'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
     ORDER BY 1, 2`);
  return res.rows;
}

export interface ServerInfo {
  version: string;
  versionNum: number;
  databaseSize: number;
  superuser: boolean;
  /** The server's clock when asked, in ms since the epoch: a second opinion on this machine's clock. */
  nowMs: number;
  /** Which cluster this is (see systemIdentifier), when the role may read it. */
  systemIdentifier: string | undefined;
  /** The server's data directory, when the role may read it (superuser or pg_read_all_settings). */
  dataDirectory: string | undefined;
}

export async function serverInfo(client: pg.Client): Promise<ServerInfo> {
  const res = await client.query<{ v: string; n: string; size: string; su: boolean; now: string }>(
    `SELECT current_setting('server_version') AS v, current_setting('server_version_num') AS n,
            pg_database_size(current_database())::text AS size,
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su,
            (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text AS now`,
  );
  const row = res.rows[0]!;
  const systemId = await systemIdentifier(client);
  // pg_settings leaves out what this role may not read: no error in the server's log
  const dir = await client.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = 'data_directory'");
  return {
    version: row.v.split(' ')[0]!,
    versionNum: Number(row.n),
    databaseSize: Number(row.size),
    superuser: row.su === true,
    nowMs: Number(row.now),
    systemIdentifier: systemId,
    dataDirectory: dir.rows[0]?.setting,
  };
}

/** The server's clock now, in ms since the epoch. */
export async function serverClockMs(client: pg.Client): Promise<number> {
  const res = await client.query<{ now: string }>('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text AS now');
  return Number(res.rows[0]!.now);
}
