/**
 * What a base backup needs of the database server, checked before pg_basebackup starts, each
 * refusal with its exact fix; and pg_basebackup's own refusals, read from its stderr, with theirs.
 */
import type pg from 'pg';
import type { DbConfig } from '../config/types';
import { BackupError } from '../errors';
import { classifyLibpqStderr } from '../pg/libpq';
import { sqlRole } from '../pg/privileges';

/** The cluster a base backup is taken of, as its server says. */
export interface BaseServer {
  systemIdentifier: string;
  /** server_version_num, e.g. 150004. */
  versionNum: number;
  segmentSize: number;
  role: string;
  /** The address the server sees this machine connect from (null over a Unix socket): for the pg_hba line. */
  clientAddr: string | null;
  /** The server's clock when it was asked (as pg_basebackup starts). */
  now: Date;
  /** A standby: its WAL range comes from the backup's own backup_manifest, not from the server's positions. */
  inRecovery: boolean;
}

const FACTS_SQL = `
  SELECT current_setting('wal_level') AS wal_level,
         current_setting('max_wal_senders')::int AS max_wal_senders,
         (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
         current_setting('server_version_num')::int AS version_num,
         pg_size_bytes(current_setting('wal_segment_size'))::bigint::text AS segment_size,
         current_user AS role, r.rolreplication, r.rolsuper, host(inet_client_addr()) AS client_addr,
         clock_timestamp() AS now, pg_is_in_recovery() AS in_recovery
    FROM pg_roles r WHERE r.rolname = current_user`;

interface FactsRow {
  wal_level: string;
  max_wal_senders: number;
  system_identifier: string;
  version_num: number;
  segment_size: string;
  role: string;
  rolreplication: boolean;
  rolsuper: boolean;
  client_addr: string | null;
  now: Date;
  in_recovery: boolean;
}

/**
 * The connection a base backup asks the server on: opened (and the server checked) before
 * pg_basebackup starts, kept for what is asked while and after it runs, so the backup opens one
 * connection, not three. It sends TCP keepalives through the hours a backup may stream (a
 * firewall's idle timeout, a server gone silent), each question has a deadline, and a dropped
 * or silent connection is replaced once.
 */
export class BaseSession {
  private constructor(
    private readonly db: DbConfig,
    private client: pg.Client | undefined,
    readonly server: BaseServer,
  ) {}

  /** Connects, reads the cluster's identity, and refuses a server or role that cannot give a base backup. */
  static async open(db: DbConfig): Promise<BaseSession> {
    const client = await connectSession(db);
    try {
      const row = (await client.query<FactsRow>(FACTS_SQL)).rows[0]!;
      return new BaseSession(db, client, serverOf(row));
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  /** The size of the databases' files (pg_database_size of those this role may connect to): asked while pg_basebackup runs. */
  async dataBytes(): Promise<number> {
    const sql = "SELECT coalesce(sum(pg_database_size(d.oid)), 0)::text AS n FROM pg_database d WHERE has_database_privilege(d.oid, 'CONNECT')";
    return Number((await this.query<{ n: string }>(sql)).n);
  }

  /**
   * The server's clock and WAL insert position now (the position undefined on a standby). A base
   * backup's times are the server's, as recovery targets are (commit times): with this machine's
   * clock behind, a backup would look finished before it was, and be chosen for a point it cannot
   * reach.
   */
  async now(): Promise<{ now: Date; lsn: string | undefined }> {
    const row = await this.query<{ now: Date; lsn: string | null }>(
      'SELECT clock_timestamp() AS now, CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_insert_lsn()::text END AS lsn',
    );
    return { now: row.now, lsn: row.lsn ?? undefined };
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }

  /** One row, on the kept connection; on a new one when that was dropped meanwhile (a long backup, a restarted pooler). */
  private async query<T extends object>(sql: string): Promise<T> {
    if (this.client) {
      try {
        return (await this.client.query<T>(sql)).rows[0]!;
      } catch {
        await this.close();
      }
    }
    this.client = await connectSession(this.db);
    return (await this.client.query<T>(sql)).rows[0]!;
  }
}

/**
 * The session's connection: keepalives, and at most a minute for an answer. The driver is loaded
 * only now, so that pg_basebackup (started first) connects and checkpoints meanwhile.
 */
async function connectSession(db: DbConfig): Promise<pg.Client> {
  const { connect } = await import('../pg/connection.js');
  return connect(db, db.database, { keepAlive: true, keepAliveInitialDelayMillis: 30_000, query_timeout: 60_000 });
}

function serverOf(row: FactsRow): BaseServer {
  if (row.wal_level === 'minimal') {
    throw new BackupError('CONFIG', `the server's wal_level is minimal: its WAL cannot rebuild a base backup`, {
      hint: "Set wal_level = replica in postgresql.conf (or ALTER SYSTEM SET wal_level = 'replica';) and restart PostgreSQL.",
    });
  }
  if (row.max_wal_senders < 1) {
    throw new BackupError('CONFIG', 'the server allows no replication connection (max_wal_senders = 0), which pg_basebackup needs', {
      hint: 'Set max_wal_senders = 10 in postgresql.conf (the default) and restart PostgreSQL.',
    });
  }
  if (!row.rolreplication && !row.rolsuper) throw replicationPrivilegeError(row.role);
  return {
    systemIdentifier: row.system_identifier,
    versionNum: row.version_num,
    segmentSize: Number(row.segment_size),
    role: row.role,
    clientAddr: row.client_addr,
    now: row.now,
    inRecovery: row.in_recovery,
  };
}

function replicationPrivilegeError(role: string): BackupError {
  return new BackupError('PRIVILEGE', `the role ${role} may not take a base backup: it has neither REPLICATION nor superuser`, {
    hint: `As a superuser: ALTER ROLE ${sqlRole(role)} REPLICATION;`,
  });
}

/** The pg_hba.conf line that lets `role` open a replication connection from `addr` (a Unix socket when null). */
export function hbaLine(role: string, addr: string | null): string {
  if (addr === null) return `local replication ${role} scram-sha-256`;
  return `host replication ${role} ${addr}/${addr.includes(':') ? 128 : 32} scram-sha-256`;
}

/** pg_basebackup's failure as the BackupError that names its fix. */
export function baseBackupError(message: string, server: BaseServer, db: DbConfig, detail: string): BackupError {
  const why = `pg_basebackup failed: ${message}`;
  if (/no pg_hba\.conf entry for replication connection/i.test(message)) {
    return new BackupError('DB_AUTH', why, {
      hint: `Add this line to pg_hba.conf (above any broader one): ${hbaLine(server.role, server.clientAddr)}, then SELECT pg_reload_conf();`,
      detail,
    });
  }
  if (/superuser or replication role|permission denied to start WAL sender|REPLICATION attribute/i.test(message)) {
    return new BackupError('PRIVILEGE', why, { hint: replicationPrivilegeError(server.role).hint, detail });
  }
  if (/max_wal_senders|too many clients|remaining connection slots/i.test(message)) {
    return new BackupError('DB_CONNECT', why, {
      hint: 'Raise max_wal_senders (and max_connections) in postgresql.conf, or wait for a replication connection to end.',
      detail,
    });
  }
  if (/incompatible server version/i.test(message)) {
    return new BackupError('VERSION', why, {
      hint: `Point PG_BIN_DIR at the client binaries of the server's PostgreSQL version (${Math.floor(server.versionNum / 10000)}) or later.`,
      detail,
    });
  }
  const code = classifyLibpqStderr(message);
  if (code === 'DB_AUTH') return new BackupError(code, why, { hint: `Check DB_USER and DB_PASSWORD (the user ${db.user}).`, detail });
  if (code === 'DB_CONNECT')
    return new BackupError(code, why, { hint: `Check that the server at ${db.host}:${db.port} runs and accepts connections.`, detail });
  return new BackupError('BASEBACKUP_FAILED', why, {
    hint: "Read pg_basebackup's messages (in the log), fix what they name, and run basebackup again.",
    detail,
  });
}
