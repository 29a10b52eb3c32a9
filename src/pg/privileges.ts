import type pg from 'pg';
import type { DbConfig } from '../config/types';
import { BackupError } from '../errors';

/** Something pg_dump must read that the current user may not, and the statement that allows it. */
export interface MissingPrivilege {
  kind: 'schema' | 'table' | 'sequence' | 'row security' | 'large object';
  /** schema.name (quoted where needed), a schema, or a large object's oid. */
  name: string;
  schema: string;
}

/** The user's name as SQL (quoted where needed), e.g. in `GRANT … TO <role>`. */
export function sqlRole(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

// What a full pg_dump reads, as pg_dump does it: USAGE on each schema with tables in it, SELECT on
// every table (LOCK … IN ACCESS SHARE MODE, COPY) and sequence (its last value), row-level
// security off (pg_dump's default: policies make it fail, unless BYPASSRLS or the owner without
// FORCE), and SELECT on every large object. Extension members are left out, as pg_dump does.
const MISSING_SQL = `
  WITH me AS (SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user),
  rels AS (
    SELECT c.oid, c.relkind, c.relowner, c.relrowsecurity, c.relforcerowsecurity, n.oid AS nsp,
           quote_ident(n.nspname) AS schema, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'S')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\\_toast%'
       AND n.nspname NOT LIKE 'pg\\_temp%'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'))
  SELECT 'schema' AS kind, schema AS name, schema FROM (SELECT DISTINCT nsp, schema FROM rels) s
   WHERE NOT has_schema_privilege(nsp, 'USAGE')
  UNION ALL
  SELECT CASE relkind WHEN 'S' THEN 'sequence' ELSE 'table' END, name, schema FROM rels
   WHERE NOT has_table_privilege(oid, 'SELECT')
  UNION ALL
  SELECT 'row security', name, schema FROM rels, me
   WHERE relkind IN ('r', 'p') AND relrowsecurity AND NOT me.rolsuper AND NOT me.rolbypassrls
     AND (relforcerowsecurity OR NOT pg_has_role(relowner, 'USAGE'))
  UNION ALL
  SELECT 'large object', m.oid::text, '' FROM pg_largeobject_metadata m, me
   WHERE NOT me.rolsuper AND current_setting('lo_compat_privileges') = 'off'
     AND NOT pg_has_role(m.lomowner, 'USAGE')
     AND NOT EXISTS (SELECT 1 FROM aclexplode(m.lomacl) a
                      WHERE a.privilege_type = 'SELECT' AND (a.grantee = 0 OR pg_has_role(a.grantee, 'USAGE')))
  ORDER BY 1, 2`;

/** What pg_dump would be refused for the current user, read in one query (in the dump's snapshot). */
export async function missingDumpPrivileges(client: pg.Client): Promise<{ role: string; missing: MissingPrivilege[] }> {
  const role = (await client.query<{ u: string }>('SELECT current_user AS u')).rows[0]!.u;
  const missing = (await client.query<MissingPrivilege>(MISSING_SQL)).rows;
  return { role, missing };
}

const SCHEMA_WIDE = 4;

/** The statements that grant what is missing, shortest form first (a schema-wide grant for many tables). */
export function grantStatements(missing: MissingPrivilege[], role: string): string[] {
  const to = sqlRole(role);
  const out: string[] = [];
  for (const m of missing.filter((x) => x.kind === 'schema')) out.push(`GRANT USAGE ON SCHEMA ${m.name} TO ${to};`);
  for (const [kind, keyword, all] of [
    ['table', '', 'TABLES'],
    ['sequence', 'SEQUENCE ', 'SEQUENCES'],
  ] as const) {
    const bySchema = new Map<string, string[]>();
    for (const m of missing.filter((x) => x.kind === kind)) bySchema.set(m.schema, [...(bySchema.get(m.schema) ?? []), m.name]);
    for (const [schema, names] of bySchema) {
      if (names.length >= SCHEMA_WIDE) out.push(`GRANT SELECT ON ALL ${all} IN SCHEMA ${schema} TO ${to};`);
      else for (const n of names) out.push(`GRANT SELECT ON ${keyword}${n} TO ${to};`);
    }
  }
  if (missing.some((x) => x.kind === 'row security')) out.push(`ALTER ROLE ${to} BYPASSRLS;`);
  const objects = missing.filter((x) => x.kind === 'large object');
  if (objects.length > 0 && objects.length < SCHEMA_WIDE) for (const o of objects) out.push(`GRANT SELECT ON LARGE OBJECT ${o.name} TO ${to};`);
  else if (objects.length > 0)
    out.push(
      `DO $$DECLARE o oid; BEGIN FOR o IN SELECT oid FROM pg_largeobject_metadata LOOP EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO ${to.replace(/'/g, "''")}', o); END LOOP; END$$;`,
    );
  return out;
}

function describe(missing: MissingPrivilege[]): string {
  const parts: string[] = [];
  const names = (kind: MissingPrivilege['kind']) => missing.filter((m) => m.kind === kind).map((m) => m.name);
  const list = (xs: string[]) => (xs.length > 5 ? `${xs.slice(0, 5).join(', ')} and ${xs.length - 5} more` : xs.join(', '));
  const tables = names('table');
  const sequences = names('sequence');
  const schemas = names('schema');
  const rls = names('row security');
  const objects = names('large object');
  if (tables.length) parts.push(`SELECT on ${tables.length === 1 ? 'table' : `${tables.length} tables`} ${list(tables)}`);
  if (sequences.length) parts.push(`SELECT on ${sequences.length === 1 ? 'sequence' : `${sequences.length} sequences`} ${list(sequences)}`);
  if (schemas.length) parts.push(`USAGE on schema ${list(schemas)}`);
  if (rls.length) parts.push(`BYPASSRLS for the row-level security of ${list(rls)}`);
  if (objects.length) parts.push(`SELECT on ${objects.length} large object(s) (${list(objects)})`);
  return parts.join('; ');
}

/** PRIVILEGE: what the user lacks for a backup, and the exact statements that grant it. */
export function dumpPrivilegeError(missing: MissingPrivilege[], role: string, db: DbConfig): BackupError {
  return new BackupError('PRIVILEGE', `DB_USER ${role} may not read everything a backup of ${db.database} needs: ${describe(missing)}`, {
    hint: `As the owner of those objects or a superuser, run in ${db.database}: ${grantStatements(missing, role).join(' ')} (README: Database privileges)`,
  });
}

/**
 * The statement that grants what a PostgreSQL tool was refused, from its stderr ("permission
 * denied for table x" and "Query was: LOCK TABLE public.x …"), or undefined.
 */
export function grantFromStderr(stderr: string, role: string): string | undefined {
  const to = sqlRole(role);
  const query = /Query was: (?:LOCK TABLE|COPY|SELECT .*? FROM) (?:ONLY )?([^\s(;]+)/.exec(stderr)?.[1];
  let m: RegExpExecArray | null;
  if ((m = /permission denied for database "?([^"\s]+)"?/.exec(stderr))) return `GRANT CONNECT ON DATABASE ${m[1]} TO ${to};`;
  if ((m = /permission denied for schema (\S+)/.exec(stderr))) return `GRANT USAGE ON SCHEMA ${m[1]} TO ${to};`;
  if ((m = /permission denied for large object (\d+)/.exec(stderr))) return `GRANT SELECT ON LARGE OBJECT ${m[1]} TO ${to};`;
  if ((m = /permission denied for sequence (\S+)/.exec(stderr))) return `GRANT SELECT ON SEQUENCE ${query ?? m[1]} TO ${to};`;
  if ((m = /permission denied for (?:table|relation) (\S+)/.exec(stderr))) return `GRANT SELECT ON ${query ?? m[1]} TO ${to};`;
  if (/row-level security policy/.test(stderr)) return `ALTER ROLE ${to} BYPASSRLS;`;
  return undefined;
}
