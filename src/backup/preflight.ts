import { describeRules } from '../retention/policy';
import fsp from 'node:fs/promises';
import type { App } from '../app';
import { chooseCompressor, describeCompression, storedCompression, ZSTD_INSTALL_HINT } from '../compress/compression';
import { checkRecipients, publicKeys, readIdentities } from '../crypto/age';
import { asBackupError, BackupError } from '../errors';
import { checkDumpCompatible } from '../pg/binaries';
import { listUserTables, serverInfo } from '../pg/catalog';
import { connect } from '../pg/connection';
import { dumpPrivilegeError, missingDumpPrivileges, sqlRole } from '../pg/privileges';
import { connectAdmin } from '../restore/scratch';
import type { DbConfig } from '../config/types';
import { smtpSender } from '../notify/mailer';
import { dataFileName } from '../repository/manifest';
import { formatBytes } from '../util/format';
import { checkDirectories, type DirCheck } from './directories';
import { protectionChecks } from './append-only';
import { lockCanaryChecks } from './lock-canary';

export interface CheckResult {
  check: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  hint?: string | undefined;
}

async function attempt(check: string, fn: () => Promise<string> | string): Promise<CheckResult> {
  try {
    return { check, status: 'ok', detail: await fn() };
  } catch (err) {
    const e = asBackupError(err);
    return { check, status: 'fail', detail: e.message, hint: e.hint };
  }
}

/** Throws the directory's problem (a configuration error), or describes the directory. */
async function writable(check: DirCheck): Promise<string> {
  if (check.problem) throw new BackupError('CONFIG', check.problem.message, { hint: check.problem.hint });
  const mode = (await fsp.stat(check.dir)).mode & 0o777;
  return `${check.dir} writable, mode ${mode.toString(8)}${mode & 0o077 ? ' (readable by others: chmod 700 it)' : ''}`;
}

/** `config check`: everything a backup needs, tried for real without taking one. */
export async function preflight(app: App): Promise<CheckResult[]> {
  const { config } = app;
  const results: CheckResult[] = [];
  results.push(
    await attempt('pg_dump', async () => {
      const b = await app.binaries();
      return `${b.version} in ${b.dir}`;
    }),
  );
  results.push(
    await attempt('database', async () => {
      const client = await connect(app.database.db);
      try {
        const info = await serverInfo(client);
        const tables = await listUserTables(client);
        const bins = await app.binaries().catch(() => undefined);
        if (bins) checkDumpCompatible(bins, info.versionNum);
        return `connected to ${app.database.db.user}@${app.database.db.host}:${app.database.db.port}/${app.database.db.database}: PostgreSQL ${info.version}, ${tables.length} tables, ${formatBytes(info.databaseSize)}${bins ? `; pg_dump ${bins.major} can dump it` : ''}`;
      } finally {
        await client.end().catch(() => undefined);
      }
    }),
  );
  const dirs = checkDirectories(config, app.database.targets, ['targets', 'state', 'log']);
  results.push(...(await privilegeChecks(app)));
  for (const t of app.targets) {
    const storage = t.repo.storage;
    results.push(
      await attempt(`target ${t.name}`, async () => {
        const keep = `retention ${describeRules(t.retention)}`;
        if (!storage.localPath) {
          const objects = await storage.list();
          await t.repo.checkLock();
          const lock = t.repo.lock ? `; Object Lock ${t.repo.lock.mode.toLowerCase()} enabled on the bucket` : '';
          return `${storage.location}: listed ${objects.length} object(s)${lock}; ${keep}`;
        }
        const dir = await writable(dirs.find((d) => d.role === 'targets' && d.dir === storage.location)!);
        const free = await storage.freeBytes();
        return `${dir}, ${free === undefined ? '?' : formatBytes(free)} free; ${keep}`;
      }),
    );
  }
  for (const t of app.targets) results.push(...(await lockCanaryChecks(t)));
  results.push(...(await protectionChecks(app)));
  results.push(await attempt('state directory', () => writable(dirs.find((d) => d.role === 'state')!)));
  results.push(await attempt('log directory', () => writable(dirs.find((d) => d.role === 'log')!)));
  results.push(await compressionCheck(app));
  results.push(...(await encryptionChecks(app)));
  const sender = smtpSender(config.alert);
  if (!sender) {
    results.push({
      check: 'email alerts',
      status: 'warn',
      detail: 'off: SMTP_HOST is not set',
      hint: 'Set SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD and ALERT_EMAIL_TO to be told when a backup fails.',
    });
  } else {
    results.push(
      await attempt('email alerts', async () => {
        await sender.verify();
        return `SMTP ${config.alert.smtp!.host}:${config.alert.smtp!.port} accepted the connection; alerts go to ${config.alert.to.join(', ')}`;
      }),
    );
  }
  return results;
}

/**
 * Compression: which compressor backups use and who runs it; WARN when zstd is the default but
 * missing (gzip instead), with how to install it.
 */
async function compressionCheck(app: App): Promise<CheckResult> {
  const { config } = app;
  const bins = await app.binaries().catch(() => undefined);
  let fallback: string | undefined;
  const result = await attempt('compression', () => {
    const c = chooseCompressor(config.compression, app.database.format, app.zstd(), bins?.major);
    fallback = c.fallback;
    const who =
      c.by === 'pg_dump'
        ? 'by pg_dump'
        : c.method === 'gzip'
          ? 'in the stream (Node)'
          : c.zstd === 'builtin'
            ? `in the stream by Node ${process.version}'s zstd`
            : `in the stream by ${c.zstd!.file}, multi-threaded`;
    const file = dataFileName('ID', app.database.format, config.encryption !== undefined, storedCompression(c));
    return `${describeCompression(c)}, ${who}; files end in ${file.slice(2)}${fallback ? ` (${fallback})` : ''}`;
  });
  return fallback ? { ...result, status: 'warn', hint: ZSTD_INSTALL_HINT } : result;
}

/**
 * Encryption: the recipients new backups are encrypted to (WARN when off), and the identity when
 * one is configured: readable, 0600, and one of the recipients (else restores and drills of new
 * backups would fail here).
 */
async function encryptionChecks(app: App): Promise<CheckResult[]> {
  const { encryption, ageIdentityFile } = app.config;
  const out: CheckResult[] = [];
  if (!encryption) {
    out.push({
      check: 'encryption',
      status: 'warn',
      detail: 'off: backups are stored readable',
      hint: 'Run `basement-backup keygen` and set BACKUP_AGE_RECIPIENTS to encrypt them (README: Encryption).',
    });
  } else {
    out.push(
      await attempt('encryption', async () => {
        await checkRecipients(encryption.recipients, encryption.variable);
        return `age, to ${encryption.recipients.join(', ')}`;
      }),
    );
  }
  if (ageIdentityFile) {
    out.push(
      await attempt('identity', async () => {
        const keys = await publicKeys(await readIdentities(ageIdentityFile, app.askSecret));
        const matching = encryption ? keys.filter((k) => encryption.recipients.includes(k)) : keys;
        if (matching.length === 0) {
          throw new BackupError('NO_KEY', `${ageIdentityFile} holds no key of the recipients (it holds ${keys.join(', ')})`, {
            hint: 'Restores and drills of new backups would fail here: point BACKUP_AGE_IDENTITY_FILE at the identity of a recipient, or add its public key to BACKUP_AGE_RECIPIENTS.',
          });
        }
        return `${ageIdentityFile} (mode 0600) opens backups for ${matching.join(', ')}`;
      }),
    );
  } else if (encryption) {
    out.push({
      check: 'identity',
      status: 'warn',
      detail: 'none here (BACKUP_AGE_IDENTITY_FILE is not set): drills check checksums only; restore where the identity is',
      hint: 'That is the setup where the server cannot read its own backups (docs/encryption.md); set BACKUP_AGE_IDENTITY_FILE to drill here.',
    });
  }
  return out;
}

/**
 * What DB_USER may do, beside connecting: read everything pg_dump reads (FAIL: backups would be
 * refused), and create databases where restore drills (WARN: only drills fail) and restores
 * (WARN: a restore would fail; backups do not need it) create theirs.
 */
async function privilegeChecks(app: App): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  // (a database that cannot be reached is the "database" check's FAIL already)
  const client = await connect(app.database.db).catch(() => undefined);
  if (client) {
    try {
      out.push(
        await attempt('privileges for backups', async () => {
          const { role, missing } = await missingDumpPrivileges(client);
          if (missing.length > 0) throw dumpPrivilegeError(missing, role, app.database.db);
          return `${role} may read every table, sequence and large object of ${app.database.db.database}`;
        }),
      );
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  const sameServer = (a: DbConfig, b: DbConfig) => a.host === b.host && a.port === b.port && a.user === b.user;
  if (app.database.verifySchedule) {
    const both = sameServer(app.database.db, app.database.verifyDb);
    out.push(
      await createCheck(
        both ? 'create databases (drills, restore)' : 'create databases (drills)',
        app.database.verifyDb,
        both
          ? 'Restore drills (VERIFY_SCHEDULE) and `restore` restore into a new database'
          : 'Restore drills (VERIFY_SCHEDULE) restore into a scratch database',
        'or set VERIFY_DB_HOST, VERIFY_DB_USER and VERIFY_DB_PASSWORD to a server where the drill may, or VERIFY_SCHEDULE=off.',
        both ? app.database.db.database : undefined,
      ),
    );
    if (both) return out;
  }
  out.push(
    await createCheck(
      'create databases (restore)',
      app.database.db,
      '`basement-backup restore` restores into a new database',
      'or run restore with DB_USER and DB_PASSWORD of a user that may (backups do not need it).',
      app.database.db.database,
    ),
  );
  return out;
}

/** WARN unless `db.user` may create databases on `db`'s server (and own them as `live`'s owner, for restores). */
async function createCheck(check: string, db: DbConfig, why: string, otherwise: string, live: string | undefined): Promise<CheckResult> {
  try {
    const client = await connectAdmin(db);
    try {
      const row = (
        await client.query<{ role: string; may: boolean; owner: string | null; member: boolean | null }>(
          `SELECT current_user AS role, (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user) AS may,
                  pg_get_userbyid(d.datdba) AS owner, pg_has_role(d.datdba, 'MEMBER') AS member
             FROM (SELECT 1) one LEFT JOIN pg_database d ON d.datname = $1`,
          [live ?? ''],
        )
      ).rows[0]!;
      const where = `${db.host}:${db.port}`;
      if (!row.may) {
        return {
          check,
          status: 'warn',
          detail: `${row.role} may not create databases on ${where}. ${why}: it would fail with exit 14.`,
          hint: `As a superuser: ALTER ROLE ${sqlRole(row.role)} CREATEDB; ${otherwise}`,
        };
      }
      if (live && row.owner && row.member === false) {
        return {
          check,
          status: 'warn',
          detail: `${row.role} may create databases on ${where} but is not a member of ${row.owner}, the owner of ${live}: a restore could not give the copy the same owner.`,
          hint: `As a superuser: GRANT ${sqlRole(row.owner)} TO ${sqlRole(row.role)}; ${otherwise}`,
        };
      }
      return { check, status: 'ok', detail: `${row.role} may create databases on ${where}` };
    } finally {
      await client.end().catch(() => undefined);
    }
  } catch (err) {
    const e = asBackupError(err);
    return { check, status: 'warn', detail: `cannot tell: ${e.message}`, hint: e.hint };
  }
}
