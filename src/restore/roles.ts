import type pg from 'pg';
import { BackupError } from '../errors';
import { log } from '../logger';

function unquote(name: string): string {
  return name.startsWith('"') ? name.slice(1, -1).replace(/""/g, '"') : name;
}

const ROLE_STMT = /^(CREATE|ALTER) ROLE ("(?:[^"]|"")+"|[^\s;]+)/;

/**
 * Recreates the roles of a `pg_dumpall --globals-only` file that this server lacks. Roles that
 * exist are left exactly as they are (no attribute or password changes); memberships are granted
 * where possible; tablespaces are skipped (their paths belong to the old server).
 */
export async function createMissingRoles(client: pg.Client, rolesSql: string): Promise<string[]> {
  const existing = new Set((await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles')).rows.map((r) => r.rolname));
  const created: string[] = [];
  const grants: string[] = [];
  for (const raw of rolesSql.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('--') || line.startsWith('\\') || line.startsWith('SET ')) continue;
    const m = ROLE_STMT.exec(line);
    if (m) {
      const name = unquote(m[2]!);
      if (existing.has(name) && !created.includes(name)) continue;
      try {
        await client.query(line);
      } catch (err) {
        throw new BackupError('RESTORE_FAILED', `cannot recreate role "${name}": ${(err as Error).message}`, {
          hint: 'Recreating roles needs a superuser or a role with CREATEROLE: set DB_USER accordingly for the restore.',
        });
      }
      if (m[1] === 'CREATE') created.push(name);
    } else if (/^GRANT /.test(line)) {
      grants.push(line);
    } else if (/TABLESPACE/.test(line)) {
      log.warn('skipping a tablespace statement from the saved globals', { statement: line.slice(0, 80) });
    }
  }
  for (const g of grants) {
    try {
      await client.query(g);
    } catch (err) {
      log.warn('could not restore a role membership', { statement: g, error: (err as Error).message });
    }
  }
  return created;
}
