import type pg from 'pg';

/**
 * The cluster's system identifier (`pg_control_system()`): set by initdb, the same on the
 * cluster's streaming replicas, new after a fresh initdb or pg_upgrade. Undefined when this role
 * may not read it (EXECUTE revoked, as some hosted servers do) or the server is older than 9.6:
 * asked first, so a refusal never reaches the server's log.
 */
export async function systemIdentifier(client: pg.Client): Promise<string | undefined> {
  const allowed = await client.query<{ ok: boolean | null }>(
    `SELECT has_function_privilege(to_regprocedure('pg_catalog.pg_control_system()'), 'EXECUTE') AS ok`,
  );
  if (allowed.rows[0]?.ok !== true) return undefined;
  const res = await client.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
  return res.rows[0]?.id;
}
