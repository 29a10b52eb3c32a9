import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backupEnv, runCli, spawnCli, tempDir, type CliResult } from '../helpers/cli';
import { createWebserverDb } from '../helpers/pg';

/** Once a year: the daemon starts, schedules, and takes no backup on its own. */
const YEARLY = '0 0 1 1 *';

interface LogLine {
  level: string;
  message: string;
  timestamp: string;
  database?: string;
  id?: string;
}

/** The line says `message` about database `db` (by name, or by a backup id of it). */
function about(l: LogLine, message: string, db: string): boolean {
  return l.message === message && (l.database === db || (l.id?.startsWith(`${db}_`) ?? false));
}

/** Every line of a JSON log, parsed; fails on a NUL byte or a line that is not JSON. */
function readLog(file: string): LogLine[] {
  const text = fs.readFileSync(file, 'utf8');
  expect(text).not.toContain('\0');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => {
      try {
        return JSON.parse(line) as LogLine;
      } catch {
        throw new Error(`not a JSON line in ${file}: ${JSON.stringify(line.slice(0, 200))}`);
      }
    });
}

function ok(r: CliResult): void {
  expect(r.code, r.stderr).toBe(0);
}

/** `count` lines of valid JSON, `bytes` long in all, as another process would have written them. */
function filler(tag: string, bytes: number): string {
  const line = (i: number) => JSON.stringify({ level: 'info', message: `${tag} ${i} ${'x'.repeat(200)}`, timestamp: new Date().toISOString() }) + '\n';
  let out = '';
  for (let i = 0; out.length < bytes; i++) out += line(i);
  return out;
}

describe('the JSON log (logs/basement-backup.jsonl)', () => {
  it('keeps every line when the daemon and other commands write it at once: appended, valid JSON, no NUL bytes, 0600', async () => {
    const [dbA, dbB, dbC] = await Promise.all([createWebserverDb(5), createWebserverDb(5), createWebserverDb(5)]);
    const dir = tempDir();
    const logFile = path.join(dir, 'logs', 'basement-backup.jsonl');
    const env = (db: string) => backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY, BACKUP_CATCH_UP: 'false', VERIFY_SCHEDULE: 'off' });

    ok(await runCli(['backup'], env(dbA)));
    const earlier = fs.readFileSync(logFile, 'utf8');
    expect(readLog(logFile).some((l) => about(l, 'backup completed', dbA))).toBe(true);

    const daemon = spawnCli(['daemon'], env(dbA));
    await daemon.waitForOutput(/next scheduled backup at/);
    // While the daemon holds the log open: two backups (of other databases, so both run) at the
    // same time, and status and list.
    const runs = await Promise.all([
      runCli(['backup'], env(dbB)),
      runCli(['backup'], env(dbC)),
      runCli(['status'], env(dbA)),
      runCli(['list'], env(dbA)),
      runCli(['status'], env(dbB)),
    ]);
    runs.forEach(ok);
    // the daemon writes again after them, through the descriptor it opened first
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);

    expect(fs.readFileSync(logFile, 'utf8').startsWith(earlier)).toBe(true);
    const lines = readLog(logFile);
    const at = (message: string, db: string) => lines.findIndex((l) => about(l, message, db));
    for (const db of [dbA, dbB, dbC]) {
      expect(at('backup started', db), db).toBeGreaterThanOrEqual(0);
      expect(at('backup completed', db), db).toBeGreaterThanOrEqual(0);
    }
    expect(lines.filter((l) => about(l, 'backup completed', dbA))).toHaveLength(1);
    const daemonStart = at('basement-backup daemon starting', dbA);
    expect(daemonStart).toBeGreaterThan(at('backup completed', dbA));
    expect(at('backup completed', dbB)).toBeGreaterThan(daemonStart);
    expect(at('backup completed', dbC)).toBeGreaterThan(daemonStart);
    expect(lines.at(-1)!.message).toBe('daemon stopped');
    expect(fs.statSync(logFile).mode & 0o777).toBe(0o600);
  });

  it('rotates at LOG_MAX_SIZE_MB into LOG_MAX_FILES files, also while the daemon has it open, losing no line', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const logs = path.join(dir, 'logs');
    const file = (n = '') => path.join(logs, `basement-backup${n}.jsonl`);
    const env = backupEnv(db, dir, { BACKUP_SCHEDULE: YEARLY, BACKUP_CATCH_UP: 'false', VERIFY_SCHEDULE: 'off', LOG_MAX_SIZE_MB: '1', LOG_MAX_FILES: '3' });
    const MB = 1024 * 1024;

    // A log over the limit is rotated by the next command that opens it.
    fs.mkdirSync(logs, { mode: 0o700 });
    const first = filler('first', MB + 1000);
    fs.writeFileSync(file(), first, { mode: 0o600 });
    ok(await runCli(['backup'], env));
    expect(fs.readFileSync(file('1'), 'utf8')).toBe(first);
    expect(readLog(file()).map((l) => l.message)).toContain('backup completed');

    // The daemon opens the file; other processes append past the limit; a command then rotates
    // it while the daemon still writes: the daemon's later lines follow the file it opened.
    const daemon = spawnCli(['daemon'], env);
    await daemon.waitForOutput(/next scheduled backup at/);
    fs.appendFileSync(file(), filler('second', MB));
    ok(await runCli(['backup'], env));
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);

    const names = fs.readdirSync(logs).filter((n) => n.endsWith('.jsonl'));
    expect(names.sort()).toEqual(['basement-backup.jsonl', 'basement-backup1.jsonl', 'basement-backup2.jsonl']);
    expect(fs.readFileSync(file('2'), 'utf8')).toBe(first);
    const all = [file('1'), file()].flatMap(readLog).map((l) => l.message);
    expect(all).toContain('basement-backup daemon starting');
    expect(all).toContain('daemon stopped');
    expect(all.filter((m) => m === 'backup completed')).toHaveLength(2);
    expect(all.filter((m) => m.startsWith('second '))).toHaveLength(filler('second', MB).split('\n').length - 1);
    for (const n of names) expect(fs.statSync(path.join(logs, n)).mode & 0o777).toBe(0o600);

    // A third rotation keeps LOG_MAX_FILES files: the oldest goes.
    fs.appendFileSync(file(), filler('third', MB));
    ok(await runCli(['status'], env));
    ok(await runCli(['backup'], env));
    expect(fs.readdirSync(logs).filter((n) => n.endsWith('.jsonl'))).toHaveLength(3);
    expect(fs.readFileSync(file('2'), 'utf8')).not.toBe(first);
    expect(readLog(file()).map((l) => l.message)).toContain('backup completed');
  });
});
