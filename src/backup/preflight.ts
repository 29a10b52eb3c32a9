import fsp from 'node:fs/promises';
import type { App } from '../app';
import { asBackupError, BackupError } from '../errors';
import { checkDumpCompatible } from '../pg/binaries';
import { listUserTables, serverInfo } from '../pg/catalog';
import { connect } from '../pg/connection';
import { smtpSender } from '../notify/mailer';
import { formatBytes } from '../util/format';
import { checkDirectories, type DirCheck } from './directories';

export interface CheckResult {
  check: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  hint?: string | undefined;
}

async function attempt(check: string, fn: () => Promise<string>): Promise<CheckResult> {
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
      const client = await connect(config.db);
      try {
        const info = await serverInfo(client);
        const tables = await listUserTables(client);
        const bins = await app.binaries().catch(() => undefined);
        if (bins) checkDumpCompatible(bins, info.versionNum);
        return `connected to ${config.db.user}@${config.db.host}:${config.db.port}/${config.db.database}: PostgreSQL ${info.version}, ${tables.length} tables, ${formatBytes(info.databaseSize)}${bins ? `; pg_dump ${bins.major} can dump it` : ''}`;
      } finally {
        await client.end().catch(() => undefined);
      }
    }),
  );
  const dirs = checkDirectories(config, ['targets', 'state', 'log']);
  for (const t of app.targets) {
    const storage = t.repo.storage;
    results.push(
      await attempt(`target ${t.name}`, async () => {
        const keep = `retention ${t.retention.days} days, at least ${t.retention.minCount}`;
        if (!storage.localPath) {
          const objects = await storage.list();
          return `${storage.location}: listed ${objects.length} object(s); ${keep}`;
        }
        const dir = await writable(dirs.find((d) => d.role === 'targets' && d.dir === storage.location)!);
        const free = await storage.freeBytes();
        return `${dir}, ${free === undefined ? '?' : formatBytes(free)} free; ${keep}`;
      }),
    );
  }
  results.push(await attempt('state directory', () => writable(dirs.find((d) => d.role === 'state')!)));
  results.push(await attempt('log directory', () => writable(dirs.find((d) => d.role === 'log')!)));
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
