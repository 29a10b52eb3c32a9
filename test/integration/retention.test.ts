import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyRetention } from '../../src/retention/policy';
import type { Manifest } from '../../src/repository/manifest';
import { takeBackup } from '../helpers/app';
import { backupEnv, backupFiles, listJson, runCli, tempDir } from '../helpers/cli';
import { createWebserverDb } from '../helpers/pg';

const DAY = 86400_000;

function backupsDir(dir: string): string {
  return path.join(dir, 'backups');
}

/** The manifests on disk, as the CLI wrote them (plus any edits of ours). */
function readManifests(dir: string): Manifest[] {
  return fs
    .readdirSync(backupsDir(dir))
    .filter((n) => n.endsWith('.manifest.json'))
    .map((n) => JSON.parse(fs.readFileSync(path.join(backupsDir(dir), n), 'utf8')) as Manifest);
}

function byLabel(dir: string, label: string): Manifest {
  const found = readManifests(dir).filter((m) => m.label === label);
  expect(found, `one backup labelled ${label}`).toHaveLength(1);
  return found[0]!;
}

/**
 * Makes a backup look `ageDays` old by rewriting its manifest's times, as if it had been taken
 * then. Everything else (sha256, size, file) stays as the CLI wrote it, so it is still good.
 */
function age(dir: string, label: string, ageDays: number, now: number, patch: Partial<Manifest> = {}): Manifest {
  const m = byLabel(dir, label);
  const created = new Date(now - ageDays * DAY);
  const next: Manifest = {
    ...m,
    created_at: created.toISOString(),
    finished_at: new Date(created.getTime() + m.duration_ms).toISOString(),
    ...patch,
  };
  fs.writeFileSync(path.join(backupsDir(dir), `${m.id}.manifest.json`), JSON.stringify(next, null, 2) + '\n');
  return next;
}

/** Every object of a backup: its manifest, its data and whatever else is stored under its id. */
function objectsOf(dir: string, id: string): string[] {
  return backupFiles(dir).filter((n) => n.startsWith(`${id}.`));
}

function expectGone(dir: string, m: Manifest): void {
  expect(objectsOf(dir, m.id), `${m.label} (${m.id}) deleted`).toEqual([]);
}

function expectIntact(dir: string, m: Manifest): void {
  const names = objectsOf(dir, m.id);
  expect(names, `${m.label} (${m.id}) kept`).toContain(`${m.id}.manifest.json`);
  expect(names).toContain(m.file);
  expect(fs.statSync(path.join(backupsDir(dir), m.file)).size).toBe(m.size_bytes);
}

/** The table row of `prune` output for backup `id` (ids can be prefixes of each other: match the whole cell). */
function rowOf(stdout: string, id: string): string {
  const line = stdout.split('\n').find((l) => l.includes(`│ ${id} `));
  expect(line, `a row for ${id} in:\n${stdout}`).toBeDefined();
  return line!;
}

async function listLabels(env: Record<string, string>): Promise<string[]> {
  return (await listJson<Manifest>(env)).map((m) => m.label ?? '');
}

describe('retention with the real CLI', () => {
  it('dry run shows what would go and why; a failed backup deletes nothing; the next good one deletes exactly what the policy says', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_RETENTION_DAYS: '7', BACKUP_RETENTION_MIN_COUNT: '2' });

    // label, age in days once aged, extra backup arguments
    const plan: [string, number, string[]][] = [
      ['expired-pin', 40, ['--keep', '1d']],
      ['old', 30, []],
      ['forever', 25, ['--keep', 'forever']],
      ['pinned-30d', 20, ['--keep', '30d']],
      ['15d', 15, []],
      ['10d', 10, []],
      ['2d', 2, []],
    ];
    for (const [label, , extra] of plan) {
      const r = await runCli(['backup', '--label', label, ...extra], env);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).not.toContain('Retention removed'); // all of them are young yet
    }
    expect(byLabel(dir, 'forever').keep_until).toBe('forever');
    expect(Date.parse(byLabel(dir, 'pinned-30d').keep_until!)).toBeGreaterThan(Date.now() + 29 * DAY);

    const now = Date.now();
    const aged = new Map<string, Manifest>();
    for (const [label, days] of plan) {
      // the 1-day pin of "expired-pin" ran out long ago: it was taken 40 days ago and pinned for 30
      const patch = label === 'expired-pin' ? { keep_until: new Date(now - 10 * DAY).toISOString() } : {};
      aged.set(label, age(dir, label, days, now, patch));
    }
    const m = (label: string) => aged.get(label)!;
    const filesBefore = backupFiles(dir);
    expect(filesBefore.filter((n) => n.endsWith('.manifest.json'))).toHaveLength(7);
    expect(await listLabels(env)).toEqual(['2d', '10d', '15d', 'pinned-30d', 'forever', 'old', 'expired-pin']);

    // prune --dry-run: newest 2 are 2d and 10d; 15d, old and expired-pin would go
    const dry = await runCli(['prune', '--dry-run'], env);
    expect(dry.code, dry.stderr).toBe(0);
    for (const label of ['15d', 'old', 'expired-pin']) {
      const row = rowOf(dry.stdout, m(label).id);
      expect(row).toContain('would delete');
      expect(row).toContain('older than 7 days, 2 newer backups exist');
    }
    expect(rowOf(dry.stdout, m('2d').id)).toMatch(/│ keep +│ min count 1\/2, younger than 7 days/);
    expect(rowOf(dry.stdout, m('10d').id)).toMatch(/│ keep +│ min count 2\/2 /);
    expect(rowOf(dry.stdout, m('forever').id)).toMatch(/│ keep +│ pinned forever/);
    expect(rowOf(dry.stdout, m('pinned-30d').id)).toMatch(new RegExp(`│ keep +│ pinned until ${m('pinned-30d').keep_until!.slice(0, 10)}`));
    expect(dry.stdout).toContain('3 would delete, 4 kept.');
    expect(backupFiles(dir)).toEqual(filesBefore);

    // a failed backup (wrong password) exits non-zero and deletes nothing, although old backups are due
    const failed = await runCli(['backup'], { ...env, DB_PASSWORD: 'not-the-password' });
    expect(failed.code).toBe(11);
    expect(failed.stdout).not.toContain('Retention removed');
    expect(backupFiles(dir)).toEqual(filesBefore);

    // the next good backup applies retention: with it, 10d drops out of the newest 2 as well
    const manifestsBefore = readManifests(dir);
    const good = await runCli(['backup', '--label', 'new'], env);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toContain('Retention removed 4 old backup(s).');
    const fresh = byLabel(dir, 'new');
    const policy = applyRetention([...manifestsBefore, fresh], { days: 7, minCount: 2 }, new Date());
    const policyDeletes = policy
      .filter((d) => d.action === 'delete')
      .map((d) => d.manifest.label)
      .sort();
    expect(policyDeletes).toEqual(['10d', '15d', 'expired-pin', 'old']);
    for (const label of policyDeletes) expectGone(dir, m(label!));
    for (const label of ['2d', 'pinned-30d', 'forever']) expectIntact(dir, m(label));
    expectIntact(dir, fresh);
    expect(await listLabels(env)).toEqual(['new', '2d', 'pinned-30d', 'forever']);
    expect(backupFiles(dir).filter((n) => n.endsWith('.manifest.json'))).toHaveLength(4);

    // nothing else is due now
    const again = await runCli(['prune'], env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('0 deleted, 4 kept.');
  });

  it('never leaves fewer than BACKUP_RETENTION_MIN_COUNT good backups, and a damaged one does not count as good', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_RETENTION_DAYS: '7', BACKUP_RETENTION_MIN_COUNT: '3' });
    for (const label of ['b1', 'b2', 'b3', 'b4']) await takeBackup(env, { label });
    const now = Date.now();
    const b = Object.fromEntries(['b1', 'b2', 'b3', 'b4'].map((label, i) => [label, age(dir, label, 20 - i, now)]));

    // all four are old: only the oldest may go, three stay
    const first = await runCli(['prune'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('1 deleted, 3 kept.');
    expect(rowOf(first.stdout, b.b1!.id)).toContain('deleted');
    expectGone(dir, b.b1!);
    for (const label of ['b2', 'b3', 'b4']) expectIntact(dir, b[label]!);

    const second = await runCli(['prune'], env);
    expect(second.stdout).toContain('0 deleted, 3 kept.');

    // the newest one's data is damaged: only two good backups are left, so neither may go
    const damaged = path.join(backupsDir(dir), b.b4!.file);
    fs.truncateSync(damaged, 100);
    const third = await runCli(['prune'], env);
    expect(third.code, third.stderr).toBe(0);
    expect(third.stdout).toContain('0 deleted, 2 kept; 1 damaged kept (never counted).');
    expectIntact(dir, b.b2!);
    expectIntact(dir, b.b3!);

    // a new good backup makes three good ones: still nothing may go
    const next = await runCli(['backup', '--label', 'n1'], env);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stdout).not.toContain('Retention removed');
    expectIntact(dir, b.b2!);
    expectIntact(dir, b.b3!);

    // one more: now the oldest good one (b2) goes, three good ones remain
    const last = await runCli(['backup', '--label', 'n2'], env);
    expect(last.code, last.stderr).toBe(0);
    expect(last.stdout).toContain('Retention removed 1 old backup(s).');
    expectGone(dir, b.b2!);
    expectIntact(dir, b.b3!);
    const list = await listJson<Manifest & { state: string }>(env);
    expect(list.filter((x) => x.state === 'ok').map((x) => x.label)).toEqual(['n2', 'n1', 'b3']);
    expect(list.find((x) => x.label === 'b4')).toMatchObject({ state: 'DAMAGED', damage: `${b.b4!.file} is 100 bytes, the manifest says ${b.b4!.size_bytes}` });
  });
});
