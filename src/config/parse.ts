import { parseDatabases } from './databases';
import { Reader } from './reader';
import { parseAlerts } from './sections/alerts';
import { parseCompressionVar } from './sections/compression';
import { parseMainDb } from './sections/connection';
import { parseMonitor } from './sections/monitor';
import { parsePitr } from './sections/pitr';
import { parseNotify, parsePingUrls } from './sections/notify';
import { parseEncryption } from './sections/encryption';
import { parseRetentionVars } from './sections/retention';
import { parseRuntime } from './sections/runtime';
import { parseSchedule, parseVerify } from './sections/schedules';
import { parseTargets } from './sections/targets';
import type { BackupFormat, ConfigOptions, Configuration, DatabaseEntry, DigestMode } from './types';

/**
 * Reads and validates the whole configuration once. Throws the first problem as a ConfigError;
 * `errors` on the thrown error's `all` property lists every problem found.
 */
export function parseConfig(
  vars: Record<string, string | undefined>,
  cwd = process.cwd(),
  processEnv: NodeJS.ProcessEnv = process.env,
  opts: ConfigOptions = {},
): Configuration {
  const r = new Reader(vars, cwd, opts.checkSchedules);
  // the DB_* database: its problems count only when BACKUP_CONFIG_FILE lists no databases
  const dbReader = new Reader(vars, cwd, opts.checkSchedules);
  const db = parseMainDb(dbReader);
  const backupDir = r.dir('BACKUP_DIR', './backups');
  const { schedule, timezone, cronZone } = parseSchedule(r);
  const format = r.oneOf<BackupFormat>('BACKUP_FORMAT', 'custom', ['custom', 'plain']);
  const digest = r.oneOf<DigestMode>('BACKUP_DIGEST', 'full', ['full', 'counts', 'off']);
  const { verifySchedule, verifyTargets, verifyDb } = parseVerify(r, db, cronZone);
  const compression = parseCompressionVar(r);
  const retention = parseRetentionVars(r);
  const minFreeBytes = r.int('BACKUP_MIN_FREE_MB', 256, 0, 10_000_000) * 1024 * 1024;
  const { targets, databases: rawDatabases } = parseTargets(r, vars, backupDir, retention, cwd);
  const ping = parsePingUrls(r);
  const single: DatabaseEntry = { name: db.database, db, verifyDb, schedule, verifySchedule, verifyTargets, format, digest, targets, ping };
  if (!rawDatabases) r.errors.unshift(...dbReader.errors);
  const databases = rawDatabases ? parseDatabases(r, rawDatabases, vars, cwd, targets) : [single];
  const alert = parseAlerts(r);
  const config: Configuration = {
    databases,
    backupDir,
    timezone,
    compression,
    minFreeBytes,
    alert,
    notify: parseNotify(r),
    monitor: parseMonitor(r, cronZone),
    pitr: parsePitr(r, cronZone),
    ...parseRuntime(r, backupDir, cwd, processEnv),
    ...parseEncryption(r),
  };
  if (r.errors.length > 0) {
    const first = r.errors[0]!;
    throw Object.assign(first, { all: r.errors });
  }
  return config;
}
