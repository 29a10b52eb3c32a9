/**
 * Issue 11: pins after the fact on two targets (local and a real S3 server), honoured by each
 * target's retention and carried by sync; the gate before a migration (`backup --verify
 * [--require-all-targets]`) with its exit codes: a passed drill, a target down, a drill server
 * down and a data file damaged between the backup and its drill.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/lib/cluster';
import type { Manifest, Pin } from '../../src/repository/manifest';
import { backupEnv, backupFiles, DUMP, spawnCli, tempDir, waitFor } from '../helpers/cli';
import { pgDumpBlocked, smallDb } from '../helpers/daemon';
import { flipByte } from '../helpers/damaged';
import { bucket, cli, listOn, localManifest, s3Manifest, type Bucket, type Listed } from '../helpers/offsite';
import { createTestDb, lockTable, query } from '../helpers/pg';

const DAY = 86400_000;
const PREFIX = 'pins/';

/** Makes backup `m` look `days` older on both targets, as if taken then (the manifest is all retention reads). */
async function age(dir: string, s3: Bucket, m: Manifest, days: number): Promise<void> {
  const created = new Date(Date.parse(m.created_at) - days * DAY).toISOString();
  const local = path.join(dir, 'backups', `${m.id}.manifest.json`);
  fs.writeFileSync(local, JSON.stringify({ ...localManifest(dir, m.id), created_at: created, finished_at: created }, null, 2));
  const remote = await s3Manifest(s3, PREFIX, m.id);
  await s3.put(`${PREFIX}${m.id}.manifest.json`, JSON.stringify({ ...remote, created_at: created, finished_at: created }, null, 2));
}

function localPin(dir: string, id: string): Pin | undefined {
  const f = path.join(dir, 'backups', `${id}.pin.json`);
  return fs.existsSync(f) ? (JSON.parse(fs.readFileSync(f, 'utf8')) as Pin) : undefined;
}

async function s3Pin(s3: Bucket, id: string): Promise<Pin | undefined> {
  return (await s3.keys(PREFIX)).includes(`${PREFIX}${id}.pin.json`) ? (JSON.parse((await s3.get(`${PREFIX}${id}.pin.json`)).toString()) as Pin) : undefined;
}

type Row = Listed & { retention: string | null };
const retentionOf = async (env: Record<string, string>, target: string) =>
  Object.fromEntries(((await listOn(env, target)) as Row[]).map((r) => [r.id, r.retention]));

describe('pins after the fact, on two targets', () => {
  it('are honoured by each target’s retention, shown by list, carried by sync, refused for an unknown id, and released by unpin', async () => {
    const s3 = await bucket();
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { ...s3.env(PREFIX), BACKUP_RETENTION_DAYS: '1', BACKUP_RETENTION_MIN_COUNT: '1' });
    for (const label of ['a', 'b', 'c']) await cli(['backup', '--label', label], env);
    const [c, b, a] = await listOn(env, 'local');

    const pinned = await cli(['pin', a!.id, '--keep', '30d', '--note', 'v2 launch'], env);
    expect(pinned.stdout).toMatch(new RegExp(`${a!.id} pinned until \\d{4}-.* on local, s3\\.`));
    expect(localPin(dir, a!.id)).toMatchObject({ note: 'v2 launch', scope: 'all' });
    expect(await s3Pin(s3, a!.id)).toMatchObject({ note: 'v2 launch', scope: 'all' });
    await cli(['pin', b!.id, '--keep', 'forever', '--target', 'local'], env);
    expect(await s3Pin(s3, b!.id)).toBeUndefined();
    // the manifest is written once: a pin never changes it
    expect(localManifest(dir, a!.id).keep_until).toBeNull();

    // an id that does not exist: NOT_FOUND, nothing written
    const unknown = await cli(['pin', `${db}_20200101T000000Z`, '--keep', '1y'], env, 30);
    expect(unknown.stderr).toMatch(/no backup ".*_20200101T000000Z" .* nothing was changed/);
    expect(unknown.stderr).toContain(c!.id);
    expect(fs.readdirSync(path.join(dir, 'backups')).filter((n) => n.endsWith('.pin.json'))).toHaveLength(2);
    // bad input: exit 2 naming the option
    expect((await cli(['pin', a!.id, '--keep', 'soon'], env, 2)).stderr).toContain('--keep');
    expect((await cli(['pin', a!.id], env, 2)).stderr).toContain('--keep: is required');
    expect((await cli(['pin', a!.id, '--keep', '1y', '--target', 'local', '--all-targets'], env, 2)).stderr).toContain('cannot be given together');

    for (const m of [a!, b!, c!]) await age(dir, s3, m, 10);
    await cli(['backup', '--label', 'd'], env);
    const [d] = await listOn(env, 'local');
    // local: a (pinned everywhere), b (pinned here), d (newest); s3: a and d
    expect((await listOn(env, 'local')).map((m) => m.label)).toEqual(['d', 'b', 'a']);
    expect((await listOn(env, 's3')).map((m) => m.label)).toEqual(['d', 'a']);
    const shown = await retentionOf(env, 'local');
    expect(shown[a!.id]).toMatch(/^pinned until \d{4}-\d\d-\d\dT.* \(v2 launch\)$/);
    expect(shown[b!.id]).toBe('pinned forever');
    expect(shown[d!.id]).toBe('min count 1/1, younger than 1 days');
    const table = await cli(['list', '--target', 's3'], env);
    expect(table.stdout).toContain('v2 launch');

    // a pin made on every target cannot be undone on one: sync would copy it back
    expect((await cli(['unpin', a!.id, '--target', 's3'], env, 2)).stderr).toContain('pinned on every target');
    // sync copies b to s3? no: its pin is local's alone, and s3's retention would delete it
    expect((await cli(['sync', '--json'], env)).stdout).toBe('[]\n');

    // a target down while pinning: pinned where it could, exit 23 naming it; sync carries the pin there later
    await s3.stop();
    const partial = await cli(['pin', d!.id, '--keep', '12w'], env, 23);
    expect(partial.stderr).toMatch(/could not pin .* on s3/);
    expect(partial.stderr).toContain('Done on local');
    expect(localPin(dir, d!.id)?.keep_until).toMatch(/^\d{4}-/);
    await s3.restart();
    expect(await s3Pin(s3, d!.id)).toBeUndefined();
    const copied = JSON.parse((await cli(['sync', '--json'], env)).stdout) as { id: string; to: string }[];
    expect(await s3Pin(s3, d!.id)).toEqual(localPin(dir, d!.id));
    // with a and d pinned there, b is the newest unpinned backup s3 would keep (min count): sync copies
    // it, without local's own pin, which stays where it was made
    expect(copied.map((x) => [x.id, x.to])).toEqual([[b!.id, 's3']]);
    expect(await s3Pin(s3, b!.id)).toBeUndefined();
    expect((await retentionOf(env, 's3'))[b!.id]).toBe('min count 1/1');

    // unpin everywhere: a rotates like any other backup again. On local, b and d are pinned, so a is
    // the newest unpinned backup and the minimum count keeps it; on s3, b holds that place and a goes
    const unpinned = await cli(['unpin', a!.id], env);
    expect(unpinned.stdout).toContain(`${a!.id} unpinned`);
    expect(localPin(dir, a!.id)?.keep_until).toBeNull();
    expect((await retentionOf(env, 'local'))[a!.id]).toBe('min count 1/1');
    expect((await retentionOf(env, 's3'))[a!.id]).toMatch(/^goes at the next prune: older than 1 days/);
    const dry = await cli(['prune', '--dry-run'], env);
    expect(dry.stdout).toMatch(new RegExp(`${a!.id} .*keep .*min count 1/1`));
    expect(dry.stdout).toMatch(new RegExp(`${b!.id} .*keep .*pinned forever`));
    expect(dry.stdout).toMatch(new RegExp(`${a!.id} .*would delete .*older than 1 days`));
    expect(dry.stdout).toMatch(/local:[^]*0 would delete, 3 kept\.[^]*s3:[^]*1 would delete, 2 kept\./);
    // the next backup takes the min-count place: a goes on local too, and b on s3; the pinned ones stay
    await cli(['backup', '--label', 'e'], env);
    expect((await listOn(env, 'local')).map((m) => m.label)).toEqual(['e', 'd', 'b']);
    expect((await listOn(env, 's3')).map((m) => m.label)).toEqual(['e', 'd']);
    expect(localPin(dir, a!.id)).toBeUndefined(); // removed with its backup
  });
});

describe('the gate before a migration: backup --verify', () => {
  it('exits 0 after a passed drill, names the backup, and prints the command that brings exactly it back', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const gate = await cli(['backup', '--label', 'pre-migration', '--keep', '30d', '--verify'], env);
    const [m] = await listOn(env, 'local');
    expect(gate.stdout).toContain(`Backup ID: ${m!.id}\n`);
    expect(gate.stdout).toMatch(/Restore drill passed: restored in [\d.]+s, 1 table\(s\) and 200 row\(s\) compared \(full\)/);
    const line = /To go back to exactly this backup: basement-backup (.*)\n/.exec(gate.stdout)![1]!;
    expect(line).toBe(`restore ${m!.id} --replace`);
    expect(m!.verification).toMatchObject({ ok: true, kind: 'drill' });
    expect(m!.keep_until).not.toBeNull();

    // the migration runs, then goes wrong; the printed command (plus --yes: not on a terminal) undoes it
    await query(db, `DELETE FROM items WHERE id > 10; ALTER TABLE items ADD COLUMN migrated boolean`);
    await cli(['backup', '--label', 'after'], env); // a newer backup exists: the command must still pick the gate's
    await cli([...line.split(' '), '--yes'], env);
    expect(await query(db, 'SELECT count(*)::int AS n FROM items')).toEqual([{ n: 200 }]);
    expect(await query(db, `SELECT 1 FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'migrated'`)).toEqual([]);
  });

  it('exit 37 when the backup is stored but its drill fails: the drill server down, or the file damaged before the drill', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const down = await cli(['backup', '--verify'], { ...env, VERIFY_DB_HOST: '127.0.0.1', VERIFY_DB_PORT: String(await freePort()) }, 37);
    const [stored] = await listOn(env, 'local');
    expect(down.stdout).toContain(`Backup ID: ${stored!.id}`);
    expect(down.stderr).toMatch(/backup taken, but its restore drill failed: .*is stored, but its restore drill/);
    // the drill server is the one down: the fix names its settings, not the backed-up server's
    expect(down.stderr).toContain('VERIFY_DB_HOST/VERIFY_DB_PORT (the drill server)');
    expect(down.stderr).not.toContain('DB_HOST/DB_PORT (or');
    expect(down.stdout).not.toContain('To go back');

    // damage the data file the moment its manifest appears, before the drill reads it
    const backups = path.join(dir, 'backups');
    const watcher = fs.watch(backups, (_event, name) => {
      if (name?.endsWith('.manifest.json') && fs.existsSync(path.join(backups, name))) {
        const data = path.join(backups, name.replace('.manifest.json', DUMP));
        if (fs.existsSync(data) && data !== path.join(backups, `${stored!.id}${DUMP}`)) {
          flipByte(data);
          watcher.close();
        }
      }
    });
    try {
      const damaged = await cli(['backup', '--verify'], env, 37);
      expect(damaged.stderr).toMatch(/does not match its manifest/);
      expect(damaged.stderr).toContain('Do not go ahead with the risky change');
    } finally {
      watcher.close();
    }
    const [newest] = (await listOn(env, 'local')) as (Manifest & { state: string })[];
    expect(newest!.state).toBe('DAMAGED');
  });

  it('--require-all-targets: exit 23 when a target is down (the backup is on the others); without it, exit 0', async () => {
    const s3 = await bucket();
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, s3.env(PREFIX));
    await s3.stop();
    const strict = await cli(['backup', '--verify', '--require-all-targets'], env, 23);
    expect(strict.stderr).toMatch(/is stored on local but not on s3 \(--require-all-targets\)/);
    expect(strict.stdout).toMatch(/Backup ID: /);
    const lenient = await cli(['backup', '--verify'], env, 0);
    expect(lenient.stdout).toContain('Restore drill passed');
    await s3.restart();
    await cli(['backup', '--verify', '--require-all-targets'], env, 0);
  });

  it('SIGTERM while the gate waits on pg_dump: exit 24, pg_dump stopped, nothing left, no drill', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const lock = await lockTable(db, 'items');
    try {
      const gate = spawnCli(['backup', '--verify'], env);
      await pgDumpBlocked(db);
      gate.child.kill('SIGTERM');
      expect(await gate.exited, gate.output()).toBe(24);
      expect(gate.output()).toContain('backup interrupted');
      expect(gate.output()).not.toContain('Backup ID');
    } finally {
      await lock.release();
    }
    expect(backupFiles(dir)).toEqual([]);
    expect(await query('postgres', `SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'basement-backup%'`, [db])).toEqual([]);
  });

  it('SIGTERM during the gate’s drill: exit 24 (interrupted, not a failed drill), the backup kept, the scratch database dropped, nothing recorded', async () => {
    const db = await createTestDb('gatestop');
    await query(
      db,
      `CREATE TABLE events (id bigint PRIMARY KEY, a text NOT NULL, b text NOT NULL);
       INSERT INTO events SELECT g, md5(g::text), md5((g * 7)::text) FROM generate_series(1, 250000) g;
       CREATE INDEX events_a ON events (a); CREATE INDEX events_b ON events (b); CREATE INDEX events_ab ON events (b, a);`,
    );
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const scratch = async () =>
      (await query<{ datname: string }>('postgres', 'SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [`bb_verify_${db}_`])).map(
        (r) => r.datname,
      );
    const gate = spawnCli(['backup', '--verify'], env);
    await waitFor(async () => (await scratch()).length > 0, 60_000, 'the gate’s drill to start restoring');
    gate.child.kill('SIGTERM');
    expect(await gate.exited, gate.output()).toBe(24);
    const [m, ...more] = await listOn(env, 'local');
    expect(more).toEqual([]);
    expect(gate.output()).toContain(`Backup ID: ${m!.id}`);
    expect(gate.output()).toContain(`basement-backup: interrupted: backup ${m!.id} is stored, but its restore drill was stopped before it finished`);
    expect(gate.output()).not.toContain('restore drill failed');
    expect(m!.state).toBe('ok');
    expect(m!.verification).toBeUndefined();
    expect(await scratch()).toEqual([]);
  });
});
