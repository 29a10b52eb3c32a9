import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backupEnv, listJson, runCli, tempDir, type CliResult } from '../helpers/cli';
import { createTestDb, pgInfo } from '../helpers/pg';

/** Exit 2, one "configuration error" line naming `option` (and the value) and one fix; no stack trace, no secret. */
function expectUsageError(r: CliResult, option: string, says: string | RegExp): void {
  const out = `${r.stdout}\n${r.stderr}`;
  expect(r.code, out).toBe(2);
  expect(r.stdout).toBe('');
  expect(out).not.toMatch(/^\s+at /m);
  expect(out).not.toMatch(/unexpected error|This is a bug/);
  expect(out).not.toContain(pgInfo().password);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  expect(lines, r.stderr).toHaveLength(2);
  expect(lines[0]!.startsWith(`basement-backup: configuration error: ${option}: `), lines[0]).toBe(true);
  if (typeof says === 'string') expect(lines[0]).toContain(says);
  else expect(lines[0]).toMatch(says);
  expect(lines[1]).toMatch(/^ {2}fix: \S.{10,}/);
  // a huge value is shortened, and nothing unprintable reaches the terminal
  for (const l of lines) expect(l.length).toBeLessThan(400);
  for (const c of ['\x1b', '\r', '\u202e']) expect(r.stderr).not.toContain(c);
}

const BAD: { name: string; args: string[]; option: string; says: string | RegExp }[] = [
  { name: '--keep 99999999y', args: ['backup', '--keep', '99999999y'], option: '--keep', says: '"99999999y" is longer than 100 years' },
  { name: '--keep 2027-02-30', args: ['backup', '--keep', '2027-02-30'], option: '--keep', says: '"2027-02-30" is not a date: 2027-02 has 28 days' },
  { name: '--keep in the past', args: ['backup', '--keep', '2020-01-01'], option: '--keep', says: /"2020-01-01" is in the past \(now is 20\d\d-/ },
  { name: '--keep 25 o’clock', args: ['backup', '--keep', '2099-01-31T25:00Z'], option: '--keep', says: 'is not a time of day' },
  { name: '--keep local time', args: ['backup', '--keep', '2099-01-31T18:00'], option: '--keep', says: 'has a time but no time zone' },
  {
    name: '--label of 10 KB',
    args: ['backup', '--label', 'x'.repeat(10240)],
    option: '--label',
    says: `"${'x'.repeat(60)}…" (10240 characters) is longer than 200 characters`,
  },
  {
    name: '--label on two lines',
    args: ['backup', '--label', 'before\nmigration'],
    option: '--label',
    says: '"before\\u000amigration" contains a control character',
  },
  { name: '--label empty', args: ['backup', '--label', ' '], option: '--label', says: 'is empty' },
  {
    name: '--target-db of 70 bytes',
    args: ['restore', '--target-db', 'c'.repeat(70)],
    option: '--target-db',
    says: `is 70 bytes long; PostgreSQL keeps only 63 and would create "${'c'.repeat(63)}"`,
  },
  { name: '--target-db of 32 two-byte letters', args: ['restore', '--target-db', 'ö'.repeat(32)], option: '--target-db', says: 'is 64 bytes long' },
  { name: '--target-db a connection string', args: ['restore', '--target-db', 'dbname=x host=elsewhere'], option: '--target-db', says: 'connection string' },
  { name: '--table empty', args: ['restore', '--table', ''], option: '--table', says: '"" is not a table name' },
  { name: '--table with an escape', args: ['restore', '--table', 'users\x1b[2J'], option: '--table', says: 'control character' },
  { name: 'a backup id with an escape', args: ['restore', 'x\x1b]0;owned\x07'], option: 'backup id', says: 'control character' },
  { name: 'a huge backup id', args: ['verify', 'i'.repeat(5000)], option: 'backup id', says: '(5000 characters) is too long' },
  { name: '--target with a space', args: ['list', '--target', 'off site'], option: '--target', says: '"off site" is not a storage target name' },
  { name: '--app that pm2 would read as an option', args: ['restore', '--replace', '--app=--silent'], option: '--app', says: 'starts with "-"' },
];

describe('free input on the command line', () => {
  it.each(BAD)('$name: exit 2 naming the option, the value and the fix; nothing started', async ({ args, option, says }) => {
    const dir = tempDir();
    const r = await runCli(args, backupEnv('webserver_db', dir));
    expectUsageError(r, option, says);
    expect(fs.existsSync(path.join(dir, 'backups'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'logs'))).toBe(false);
  });

  it('good values are stored exactly: a date-time with its offset, a 200-character label', async () => {
    const db = await createTestDb('input');
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const label = `${'ü'.repeat(190)} 🚀 deploy`;
    const r = await runCli(['backup', '--keep', '2099-02-28T12:00:00+01:00', '--label', label], env);
    expect(r.code, r.stderr).toBe(0);
    const [m] = await listJson<{ keep_until: string; label: string }>(env);
    expect(m!.keep_until).toBe('2099-02-28T11:00:00.000Z');
    expect(m!.label).toBe(label);
  });

  it('list shows a label written by an older version (10 KB, several lines) on one short line', async () => {
    const db = await createTestDb('input');
    const dir = tempDir();
    const env = backupEnv(db, dir);
    expect((await runCli(['backup', '--label', 'first'], env)).code).toBe(0);
    expect((await runCli(['backup'], env)).code).toBe(0);
    const manifests = fs.readdirSync(path.join(dir, 'backups')).filter((n) => n.endsWith('.manifest.json'));
    expect(manifests).toHaveLength(2);
    const file = path.join(dir, 'backups', manifests.sort()[1]!);
    const m = JSON.parse(fs.readFileSync(file, 'utf8')) as { label: string | null };
    m.label = `${'very long label '.repeat(640)}\nsecond line\n\x1b[31mred`;
    fs.writeFileSync(file, JSON.stringify(m));

    const r = await runCli(['list'], env);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    // every line as wide as the table, which fits 120 columns; the label on one line, cut (the retention rules may wrap)
    expect(new Set(lines.map((l) => l.length)).size).toBe(1);
    expect(lines[0]!.length).toBeLessThanOrEqual(120);
    expect(r.stdout).not.toContain('\x1b');
    expect(r.stdout).toMatch(/│ very long[^│\n]*… *│/);
    expect(lines.filter((l) => l.includes('very long'))).toHaveLength(1);
    expect(r.stdout).not.toContain('second line');
    expect(r.stdout).toMatch(/│ first +│/);
  });
});
