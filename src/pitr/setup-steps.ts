/**
 * The set-up of point-in-time recovery for this configuration, as `pitr-setup` prints it: the
 * postgresql.conf lines, the role's REPLICATION, the pg_hba.conf line and the commands that apply
 * them on Debian's packaged PostgreSQL, then WAL_RECEIVE=on for the daemon (design (b): the daemon
 * streams WAL with pg_receivewal through a slot, as the app's user).
 */
import type { App } from '../app';
import { sqlRole } from '../pg/privileges';
import { shellQuote } from '../restore/by-hand';
import type { ServerFacts } from './server-checks';

export interface SetupInput {
  app: App;
  /** The env file the daemon reads (its WAL_RECEIVE goes there). */
  envFile: string;
  /** Who runs this command: the daemon's user. */
  osUser: string;
  /** What the server said, when it was asked (not with --print-only). */
  facts: ServerFacts | undefined;
}

/** The address the server sees this machine connect from: known when asked, else loopback for a local server. */
function clientAddress(i: SetupInput): string | undefined {
  if (i.facts) return i.facts.clientAddr ?? undefined;
  const host = i.app.database.db.host;
  if (host === 'localhost' || host === '127.0.0.1') return '127.0.0.1';
  if (host === '::1') return '::1';
  return undefined;
}

function hbaFor(role: string, addr: string | undefined, socket: boolean): string {
  if (socket) return `local replication ${role} scram-sha-256`;
  const a = addr ?? 'ADDRESS';
  return `host replication ${role} ${a}/${a.includes(':') ? 128 : 32} scram-sha-256`;
}

/** Whether applying the lines needs a restart (a setting read only at start changes), when the server's values are known. */
function needsRestart(f: ServerFacts | undefined): boolean | undefined {
  if (!f) return undefined;
  return f.walLevel === 'minimal' || f.maxWalSenders < 2 || f.maxSlots < 1 || f.sendersUsed >= f.maxWalSenders;
}

/** The set-up, as lines of text ready to copy. */
export function setupSteps(i: SetupInput): string[] {
  const db = i.app.database.db;
  const role = i.facts?.role ?? db.user;
  const major = i.facts ? Math.floor(i.facts.versionNum / 10000) : 15;
  const etc = `/etc/postgresql/${major}/main`;
  const slot = i.app.config.pitr.slotName;
  const addr = clientAddress(i);
  const socket = db.host.startsWith('/') || (i.facts !== undefined && i.facts.clientAddr === null);
  const hba = hbaFor(role, addr, socket);
  // a function's privileges are per database: the GRANT goes into DB_NAME's, where the switch is called
  const psql = (sql: string, database?: string) => `sudo -u postgres psql${database ? ` -d ${shellQuote(database)}` : ''} -c ${shellQuote(sql)}`;
  const restart = needsRestart(i.facts);
  return [
    `Point-in-time recovery of ${i.app.database.name}: ${db.user}@${db.host}:${db.port}/${db.database}, replication slot ${slot}; the daemon runs as ${i.osUser} and streams the WAL itself (pg_receivewal), nothing runs as postgres.`,
    `On the database server, once (Debian's PostgreSQL ${major}; as a user who may sudo):`,
    '',
    `1. postgresql.conf: these lines, in a file of their own (Debian reads ${etc}/conf.d/):`,
    `   sudo tee ${etc}/conf.d/basement-backup.conf >/dev/null <<'EOF'`,
    `   wal_level = replica             # WAL that can rebuild a base backup (the default)`,
    `   max_wal_senders = 10            # the receiver and pg_basebackup use one each (the default)`,
    `   max_replication_slots = 10      # the receiver holds one, ${slot} (the default)`,
    `   max_slot_wal_keep_size = 10GB   # the most WAL kept for a receiver that is down; the default, -1, fills the disk until PostgreSQL stops`,
    `   archive_timeout = 60            # a segment is completed, so archived, at least once a minute: the most writes lost with the server`,
    `   EOF`,
    `   10GB: the WAL of the longest outage of the receiver to ride out (about a day of writes: pg_current_wal_lsn() a day apart); pg_wal's disk must hold it. Past it the server drops the slot's WAL: the archive then has a gap until the next base backup.`,
    '',
    `2. The role may stream WAL, and switch it for pitr-setup's test:`,
    `   ${psql(`ALTER ROLE ${sqlRole(role)} REPLICATION;`)}`,
    `   ${psql(`GRANT EXECUTE ON FUNCTION pg_switch_wal() TO ${sqlRole(role)};`, db.database)}`,
    '',
    `3. pg_hba.conf accepts its replication connection from this machine${addr || socket ? '' : ' (ADDRESS: as the server sees it; pitr-setup without --print-only names it)'}:`,
    `   echo ${shellQuote(hba)} | sudo tee -a ${etc}/pg_hba.conf`,
    `   (first match wins: it must come before any line that rejects it)`,
    '',
    restart === false
      ? `4. Apply: sudo systemctl reload postgresql   (no restart: wal_level, max_wal_senders and max_replication_slots already allow it)`
      : restart === true
        ? `4. Apply: sudo systemctl restart postgresql   (a restart: wal_level, max_wal_senders or max_replication_slots change, which are read only at start)`
        : `4. Apply: sudo systemctl reload postgresql   (restart instead if wal_level, max_wal_senders or max_replication_slots changed: read only at start)`,
    '',
    `5. The daemon streams the WAL (as ${i.osUser}):`,
    i.app.config.pitr.receive
      ? `   WAL_RECEIVE is on already; if the daemon runs since before, restart it: pm2 restart basement-backup`
      : `   echo WAL_RECEIVE=on >> ${shellQuote(i.envFile)} && pm2 restart basement-backup`,
    `   (the slot is created at its first start; it takes the first base backup then)`,
    '',
    `6. Check it all, with a test switch that must reach every target: basement-backup pitr-setup`,
  ];
}
