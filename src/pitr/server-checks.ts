/**
 * What the WAL receiver and base backups need of the database server, each checked for real and
 * reported as a row (ok, warn, or a problem with its error code and exact fix): for `pitr-setup`
 * and the PITR rows of `config check`.
 */
import type pg from 'pg';
import type { App } from '../app';
import { asBackupError, BackupError, type ErrorCode } from '../errors';
import { connect } from '../pg/connection';
import { sqlRole } from '../pg/privileges';
import { formatBytes } from '../util/format';
import { hbaLine } from './base-server';

/** One check: `fail` rows carry the error code the command exits with, and the fix. */
export interface PitrCheck {
  check: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  hint?: string | undefined;
  code?: ErrorCode | undefined;
}

/** What the server says about itself, the role and the slot, in one query. */
export interface ServerFacts {
  version: string;
  versionNum: number;
  systemIdentifier: string;
  walLevel: string;
  maxWalSenders: number;
  sendersUsed: number;
  maxSlots: number;
  slotsUsed: number;
  /** max_slot_wal_keep_size in MB; -1: no limit. */
  keepSizeMb: number;
  /** archive_timeout in seconds; 0: off. */
  archiveTimeout: number;
  role: string;
  replication: boolean;
  superuser: boolean;
  /** The address the server sees this machine connect from; null over a Unix socket. */
  clientAddr: string | null;
  slot: { walStatus: string | null; active: boolean; lagBytes: number } | undefined;
}

const FACTS_SQL = `
  SELECT current_setting('server_version') AS version, current_setting('server_version_num')::int AS version_num,
         (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
         current_setting('wal_level') AS wal_level,
         current_setting('max_wal_senders')::int AS max_wal_senders,
         (SELECT count(*) FROM pg_stat_replication)::int AS senders_used,
         current_setting('max_replication_slots')::int AS max_slots,
         (SELECT count(*) FROM pg_replication_slots)::int AS slots_used,
         (SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size')::text AS keep_size_mb,
         (SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout') AS archive_timeout,
         current_user AS role, r.rolreplication, r.rolsuper, host(inet_client_addr()) AS client_addr,
         s.slot_name IS NOT NULL AS has_slot, s.wal_status, coalesce(s.active, false) AS active,
         pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint::text AS lag_bytes
    FROM pg_roles r LEFT JOIN pg_replication_slots s ON s.slot_name = $1
   WHERE r.rolname = current_user`;

/** Reads the facts over an ordinary connection (throws the connection's error, classified). */
export async function serverFacts(app: App): Promise<ServerFacts> {
  const client = await connect(app.database.db);
  try {
    await client.query(`SET statement_timeout = '30s'`);
    const r = (await client.query<Record<string, string | number | boolean | null>>(FACTS_SQL, [app.config.pitr.slotName])).rows[0]!;
    return {
      version: String(r.version),
      versionNum: Number(r.version_num),
      systemIdentifier: String(r.system_identifier),
      walLevel: String(r.wal_level),
      maxWalSenders: Number(r.max_wal_senders),
      sendersUsed: Number(r.senders_used),
      maxSlots: Number(r.max_slots),
      slotsUsed: Number(r.slots_used),
      keepSizeMb: r.keep_size_mb === null ? -1 : Number(r.keep_size_mb),
      archiveTimeout: Number(r.archive_timeout ?? 0),
      role: String(r.role),
      replication: r.rolreplication === true,
      superuser: r.rolsuper === true,
      clientAddr: r.client_addr === null ? null : String(r.client_addr),
      slot: r.has_slot ? { walStatus: r.wal_status as string | null, active: r.active === true, lagBytes: Number(r.lag_bytes ?? 0) } : undefined,
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

const ok = (check: string, detail: string): PitrCheck => ({ check, status: 'ok', detail });
const warn = (check: string, detail: string, hint: string): PitrCheck => ({ check, status: 'warn', detail, hint });
const fail = (check: string, code: ErrorCode, detail: string, hint: string): PitrCheck => ({ check, status: 'fail', detail, hint, code });

/** The row of an error: a problem with its code and fix. */
export function failed(check: string, err: unknown): PitrCheck {
  const e = asBackupError(err);
  return fail(check, e.code, e.message, e.hint ?? '');
}

const RESTART = 'then restart PostgreSQL (sudo systemctl restart postgresql): this setting is read only at start';

export function walLevelCheck(f: ServerFacts): PitrCheck {
  if (f.walLevel === 'minimal') {
    return fail('wal_level', 'CONFIG', `wal_level = minimal: its WAL cannot rebuild a base backup`, `In postgresql.conf: wal_level = replica; ${RESTART}.`);
  }
  return ok('wal_level', `${f.walLevel}`);
}

export function walSendersCheck(f: ServerFacts): PitrCheck {
  const what = `max_wal_senders = ${f.maxWalSenders}, ${f.sendersUsed} in use`;
  if (f.maxWalSenders < 1) {
    return fail(
      'max_wal_senders',
      'CONFIG',
      `${what}: no replication connection is allowed`,
      `In postgresql.conf: max_wal_senders = 10 (the default); ${RESTART}.`,
    );
  }
  if (f.sendersUsed >= f.maxWalSenders) {
    return fail(
      'max_wal_senders',
      'CONFIG',
      `${what}: none is free for pg_basebackup${f.slot?.active ? '' : ' or the receiver'}`,
      `In postgresql.conf: max_wal_senders = ${f.maxWalSenders + 2}; ${RESTART}.`,
    );
  }
  return ok('max_wal_senders', `${what}`);
}

export function slotsCheck(f: ServerFacts, slot: string): PitrCheck {
  const what = `max_replication_slots = ${f.maxSlots}, ${f.slotsUsed} in use`;
  if (f.maxSlots < 1 || (!f.slot && f.slotsUsed >= f.maxSlots)) {
    return fail(
      'max_replication_slots',
      'CONFIG',
      `${what}: no slot is free for ${slot}`,
      `In postgresql.conf: max_replication_slots = ${Math.max(10, f.maxSlots + 1)}; ${RESTART}.`,
    );
  }
  return ok('max_replication_slots', what);
}

export function keepSizeCheck(f: ServerFacts): PitrCheck {
  if (f.keepSizeMb < 0) {
    return warn(
      'max_slot_wal_keep_size',
      '-1 (no limit): a receiver that is down for long makes the server keep WAL for its slot until the disk of pg_wal is full and PostgreSQL stops',
      "In postgresql.conf: max_slot_wal_keep_size = 10GB (the WAL of the longest outage to ride out, that pg_wal's disk can hold), then SELECT pg_reload_conf();",
    );
  }
  const size = f.keepSizeMb % 1024 === 0 ? `${f.keepSizeMb / 1024}GB` : `${f.keepSizeMb}MB`;
  return ok('max_slot_wal_keep_size', `${size}: the most WAL the server keeps for a receiver that is down`);
}

export function archiveTimeoutCheck(f: ServerFacts): PitrCheck {
  const fix = 'In postgresql.conf: archive_timeout = 60, then SELECT pg_reload_conf();';
  if (f.archiveTimeout === 0) {
    return warn(
      'archive_timeout',
      '0 (off): a segment is archived only once 16 MB of WAL is written; on a quiet server the last writes can stay unarchived for hours or days',
      fix,
    );
  }
  if (f.archiveTimeout > 300) {
    return warn('archive_timeout', `${f.archiveTimeout} s: up to ${f.archiveTimeout} s of writes are not archived yet, and lost with the server`, fix);
  }
  return ok('archive_timeout', `${f.archiveTimeout} s: at most about that much of the last writes is not archived yet`);
}

export function roleCheck(f: ServerFacts): PitrCheck {
  if (f.replication || f.superuser) return ok('REPLICATION', `${f.role} has ${f.superuser ? 'superuser' : 'REPLICATION'}`);
  return fail(
    'REPLICATION',
    'PRIVILEGE',
    `${f.role} has neither REPLICATION nor superuser: it may not stream WAL nor take base backups`,
    `As a superuser: ALTER ROLE ${sqlRole(f.role)} REPLICATION;`,
  );
}

/**
 * Opens a physical replication connection (what pg_hba.conf's `replication` lines match, and what
 * pg_receivewal and pg_basebackup open) and asks IDENTIFY_SYSTEM: one short exchange, nothing started.
 */
export async function replicationConnectionCheck(app: App, f: ServerFacts): Promise<PitrCheck> {
  const check = 'pg_hba replication';
  const db = app.database.db;
  let client: pg.Client | undefined;
  try {
    client = await connect(db, db.database, { replication: 'true', query_timeout: 30_000 });
    const r = await client.query<{ systemid: string; timeline: string }>('IDENTIFY_SYSTEM');
    return ok(check, `a replication connection as ${db.user} from ${f.clientAddr ?? 'the local socket'} works (system ${r.rows[0]?.systemid})`);
  } catch (err) {
    const message = (err as { message?: string }).message ?? '';
    const hba = /no pg_hba\.conf entry for replication connection from host "([^"]+)"|pg_hba\.conf rejects replication connection for host "([^"]+)"/i.exec(
      message,
    );
    if (hba) {
      const line = hbaLine(f.role, hba[1] ?? hba[2] ?? f.clientAddr);
      return fail(
        check,
        'DB_AUTH',
        `pg_hba.conf has no replication line for ${f.role} from ${hba[1] ?? hba[2]}`,
        `Add to pg_hba.conf (above any broader line): ${line} — then SELECT pg_reload_conf();`,
      );
    }
    if (/superuser or replication role|REPLICATION attribute|permission denied to start WAL sender/i.test(message)) {
      // the login passed pg_hba.conf; the walsender refused the role afterwards (the REPLICATION row's problem)
      return ok(check, `pg_hba.conf lets ${db.user} in from ${f.clientAddr ?? 'the local socket'}; streaming waits for REPLICATION (above)`);
    }
    return failed(check, err);
  } finally {
    await client?.end().catch(() => undefined);
  }
}

/** The slot: present and not `lost`, and how much WAL the server keeps for it. */
export function slotCheck(f: ServerFacts, slot: string): PitrCheck {
  const check = 'replication slot';
  if (!f.slot) {
    return warn(
      check,
      `${slot} does not exist yet`,
      'The WAL receiver creates it at its first start: WAL_RECEIVE=on in .env, then pm2 restart basement-backup.',
    );
  }
  const kept = `${formatBytes(f.slot.lagBytes)} of WAL kept for it`;
  if (f.slot.walStatus === 'lost') {
    return fail(
      check,
      'WAL_ARCHIVING',
      `${slot} is lost: the server removed WAL it had not received (max_slot_wal_keep_size was passed), so the archive has a gap`,
      `Recovery cannot pass the gap: with the receiver running, take a new base backup (basement-backup basebackup); SELECT pg_drop_replication_slot('${slot}'); lets the receiver create it afresh. Raise max_slot_wal_keep_size if outages last longer.`,
    );
  }
  if (f.slot.walStatus === 'unreserved') {
    return warn(
      check,
      `${slot}: ${kept}, past max_slot_wal_keep_size: the server may remove it at its next checkpoint`,
      'Start the WAL receiver now (pm2 restart basement-backup).',
    );
  }
  return ok(check, `${slot}: ${f.slot.active ? 'a receiver streams from it' : 'no receiver streams from it now'}; ${kept}`);
}

/**
 * The server rows: connect, version, the settings, the role, the replication connection, the slot.
 * When the server cannot be reached, the one row that says so.
 */
export async function serverChecks(app: App): Promise<{ rows: PitrCheck[]; facts: ServerFacts | undefined }> {
  const db = app.database.db;
  let facts: ServerFacts;
  try {
    facts = await serverFacts(app);
  } catch (err) {
    return { rows: [failed('connect', err)], facts: undefined };
  }
  const slot = app.config.pitr.slotName;
  const rows = [
    ok('connect', `${db.user}@${db.host}:${db.port}/${db.database}`),
    await versionCheck(app, facts),
    walLevelCheck(facts),
    walSendersCheck(facts),
    slotsCheck(facts, slot),
    keepSizeCheck(facts),
    archiveTimeoutCheck(facts),
    roleCheck(facts),
    await replicationConnectionCheck(app, facts),
    slotCheck(facts, slot),
  ];
  return { rows, facts };
}

/** PostgreSQL 13 or later (max_slot_wal_keep_size), and pg_receivewal of its major version or newer. */
async function versionCheck(app: App, f: ServerFacts): Promise<PitrCheck> {
  const major = Math.floor(f.versionNum / 10000);
  if (major < 13) {
    return fail('server version', 'VERSION', `PostgreSQL ${f.version}: the WAL receiver needs 13 or later (max_slot_wal_keep_size)`, 'Upgrade the server.');
  }
  try {
    const bins = await app.binaries();
    if (bins.major < major) {
      throw new BackupError('VERSION', `PostgreSQL ${f.version}, and pg_receivewal here is ${bins.version}: older than the server`, {
        hint: `Install the client programs of PostgreSQL ${major} (apt-get install postgresql-client-${major}) or point PG_BIN_DIR at them.`,
      });
    }
    return ok('server version', `PostgreSQL ${f.version}; pg_receivewal and pg_basebackup ${bins.version} in ${bins.dir}`);
  } catch (err) {
    return failed('server version', err);
  }
}

/** The rows `config check` adds when WAL_RECEIVE=on (none when the server cannot be reached: its "database" row says so). */
export async function pitrConfigRows(app: App): Promise<PitrCheck[]> {
  if (!app.config.pitr.receive) return [];
  const wanted = new Set(['wal_level', 'REPLICATION', 'pg_hba replication', 'replication slot']);
  const { rows, facts } = await serverChecks(app);
  if (!facts) return [];
  return rows.filter((r) => wanted.has(r.check)).map((r) => ({ ...r, check: `PITR ${r.check}` }));
}
