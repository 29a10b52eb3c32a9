/**
 * What a failed pg_receivewal means, from its last stderr lines: the error that names the cause
 * and the exact fix (the role's REPLICATION attribute, the pg_hba.conf line, the slot in use).
 */
import type { DbConfig } from '../config/types';
import { BackupError } from '../errors';
import { connectHint, loginHint } from '../pg/hints';

/** Whether a receiver should stop trying (the CLI exits) rather than restart pg_receivewal with a backoff. */
export function isPermanent(err: BackupError): boolean {
  return err.code === 'PRIVILEGE' || err.code === 'DB_AUTH' || err.code === 'CONFIG' || err.code === 'DB_MISSING';
}

/** The error of a pg_receivewal run (creating the slot, or streaming) that ended with `tail` on its stderr. */
export function receivewalError(tail: string, db: DbConfig, slot: string): BackupError {
  const where = `${db.user}@${db.host}:${db.port}`;
  const said = tail.replace(/^pg_receivewal: (error: )?/gm, '').trim() || 'it exited without saying why';
  const role = quoteIdent(db.user);
  if (/superuser or replication role|REPLICATION attribute|permission denied to (start WAL sender|use replication slots)/i.test(tail)) {
    return new BackupError('PRIVILEGE', `${db.user} may not stream WAL from ${db.host}:${db.port}: ${said}`, {
      hint: `As a superuser run: ALTER ROLE ${role} REPLICATION; (docs/pitr.md)`,
    });
  }
  const hba = /(?:no pg_hba\.conf entry for|pg_hba\.conf rejects) replication connection (?:from|for) host "([^"]+)"/i.exec(tail);
  if (hba) {
    const mask = hba[1]!.includes(':') ? '128' : '32';
    return new BackupError('DB_AUTH', `the server does not accept replication connections from ${hba[1]} as ${db.user}: ${said}`, {
      hint: `Add to pg_hba.conf: host replication ${db.user} ${hba[1]}/${mask} scram-sha-256 — then SELECT pg_reload_conf(); (docs/pitr.md)`,
    });
  }
  if (/password authentication failed|no password supplied|authentication failed/i.test(tail)) {
    return new BackupError('DB_AUTH', `login refused for ${where}: ${said}`, { hint: loginHint(db) });
  }
  if (/wal_level|max_replication_slots|all replication slots are in use|max_wal_senders|number of requested standby connections/i.test(tail)) {
    return new BackupError('CONFIG', `the server cannot give a replication slot or a WAL sender: ${said}`, {
      hint: 'In postgresql.conf: wal_level = replica (or logical), max_wal_senders and max_replication_slots above the number in use (the defaults, 10, do); then restart PostgreSQL.',
    });
  }
  if (/replication slot ".*" is active for PID/i.test(tail)) {
    return new BackupError('LOCKED', `another receiver streams from replication slot ${slot} on ${db.host}:${db.port}: ${said}`, {
      hint: `Stop the other receiver (a second daemon or wal-receive with WAL_RECEIVE=on), or give this one its own WAL_SLOT_NAME. It is tried again.`,
    });
  }
  return new BackupError('DB_CONNECT', `pg_receivewal from ${where} ended: ${said}`, { hint: `${connectHint(db)} It is restarted with a backoff.` });
}

function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}
