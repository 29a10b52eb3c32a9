import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { Verification } from '../../src/repository/manifest';
import { backupEnv, runCli, smtpEnv, tempDir } from '../helpers/cli';
import { createWebserverDb, query } from '../helpers/pg';
import { smtpSink } from '../helpers/smtp';
import { ageDays, backupsDir, cli, copiesOf, flipByte, listNames, objectsOf, takeBackups } from '../helpers/damaged';

// Backups in plain view: a wrong clock does not reorder them, and nothing of a backup hides from the operator; split from damaged-backups.test.ts so the two halves run in parallel.

describe('the order of backups does not depend on the clock', () => {
  const libfaketime = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1', '/usr/lib/faketime/libfaketime.so.1'].find((f) => fs.existsSync(f));

  it.skipIf(!libfaketime)(
    'a backup taken with the clock 30 days ahead is flagged, never "latest" after a newer one, and retention stops with "clock went backwards"',
    async () => {
      const smtp = await smtpSink();
      const db = await createWebserverDb(5);
      const dir = tempDir();
      const env = backupEnv(db, dir, { BACKUP_RETENTION_DAYS: '7', BACKUP_RETENTION_MIN_COUNT: '1', ...smtpEnv(smtp.port) });
      await cli(['backup', '--label', 'before'], env);
      // this process (only) sees a clock 30 days ahead; the database server's clock is right
      const ahead = await cli(['backup', '--label', 'ahead'], { ...env, LD_PRELOAD: libfaketime!, FAKETIME: '+30d' });
      expect(ahead.stderr).toMatch(/retention on local failed: this machine's clock is \d+d \d+h ahead of the database server's; retention deleted nothing/);
      await cli(['backup', '--label', 'after'], env);

      const list = await listNames(env);
      expect(list.map((x) => x.label)).toEqual(['after', 'ahead', 'before']);
      expect(list.map((x) => x.seq)).toEqual([3, 2, 1]);
      expect(list.map((x) => x.future_dated)).toEqual([false, true, false]);
      const text = (await cli(['list'], env)).stdout;
      expect(text).toContain('(IN THE FUTURE)');

      const status = JSON.parse((await cli(['status', '--json'], env)).stdout) as {
        newest: { id: string; age_seconds: number | null };
        future_dated: string[];
      };
      expect(status.newest.id).toBe(list[0]!.id);
      expect(status.newest.age_seconds).toBeGreaterThanOrEqual(0);
      expect(status.future_dated).toEqual([list[1]!.id]);
      const drill = JSON.parse((await cli(['verify', 'latest', '--json'], env)).stdout) as { id: string };
      expect(drill.id).toBe(list[0]!.id);

      // make "before" old enough to go: retention must still refuse while a backup is dated after now
      ageDays(dir, list[2]!, 20);
      const refused = await cli(['prune'], env, 26);
      expect(refused.stderr).toContain('the clock went backwards');
      expect(objectsOf(dir, list[2]!.id)).toContain(list[2]!.file);
      expect((await smtp.waitFor(1)).some((m) => /clock went backwards/.test(m.text ?? ''))).toBe(true);
      // the operator who has checked the clock can go on; the future-dated one is kept
      await cli(['prune', '--trust-clock'], env);
      expect(objectsOf(dir, list[2]!.id)).toEqual([]);
      expect(objectsOf(dir, list[1]!.id)).toContain(list[1]!.file);
    },
  );
});

describe('nothing of a backup hides', () => {
  it('objects no manifest owns (a crash between data and manifest) show with list --all and go with the next backup or prune', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const [crashed] = await takeBackups(env, 1);
    // the state a crash between the data's rename and the manifest leaves behind
    fs.rmSync(path.join(backupsDir(dir), `${crashed!.id}.manifest.json`));
    expect(objectsOf(dir, crashed!.id).sort()).toEqual([crashed!.file, `${crashed!.id}.roles.sql`].sort());

    expect(await listNames(env)).toEqual([]);
    const all = await listNames(env, ['--all']);
    expect(all.map((x) => [x.state, path.basename(x.file)]).sort()).toEqual([
      ['ORPHAN', crashed!.file],
      ['ORPHAN', `${crashed!.id}.roles.sql`],
    ]);
    expect((await cli(['list'], env)).stdout).toContain('2 object(s) belong to no manifest');
    const dry = await cli(['prune', '--dry-run'], env);
    expect(dry.stdout).toMatch(new RegExp(`${crashed!.file} .*would remove`));
    expect(objectsOf(dir, crashed!.id)).toHaveLength(2);

    const next = await cli(['backup'], env);
    expect(next.stderr).toContain('removed objects that no manifest owns');
    expect(objectsOf(dir, crashed!.id)).toEqual([]);

    // a delete interrupted after the manifest: prune removes the rest
    const [, victim] = await listNames(env).then((l) => [...l, ...l]);
    fs.rmSync(path.join(backupsDir(dir), `${victim!.id}.manifest.json`));
    const pruned = await cli(['prune'], env);
    expect(pruned.stdout).toMatch(/object\(s\) without a manifest removed/);
    expect(objectsOf(dir, victim!.id)).toEqual([]);
  });

  it('a manifest that is not valid JSON shows as DAMAGED in list and status, fails verify --checksums-only, and is mailed once', async () => {
    const smtp = await smtpSink();
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir, smtpEnv(smtp.port));
    const [broken, good] = await takeBackups(env, 2);
    fs.writeFileSync(path.join(backupsDir(dir), `${broken!.id}.manifest.json`), '{"manifest_version": 1, "id": "');

    const list = await listNames(env);
    expect(list.map((x) => [x.id, x.state, x.damage])).toEqual([
      [good!.id, 'ok', null],
      [broken!.id, 'DAMAGED', 'the manifest is not valid JSON'],
    ]);
    expect((await cli(['list'], env)).stdout).toMatch(new RegExp(`${broken!.id} .*DAMAGED: the manifest is not valid JSON`));
    const status = await cli(['status'], env);
    expect(status.stdout).toMatch(new RegExp(`DAMAGED .*${broken!.id}: the manifest is not valid JSON`));
    const checks = await cli(['verify', '--checksums-only', '--json'], env, 31);
    expect((JSON.parse(checks.stdout) as { id: string; ok: boolean }[]).map((c) => [c.id, c.ok])).toEqual([
      [good!.id, true],
      [broken!.id, false],
    ]);

    // the next backups mail it once, not every day
    await cli(['backup'], env);
    await cli(['backup'], env);
    await smtp.settled(); // both have exited: what they mailed has arrived
    const about = smtp.mails.filter((m) => /damaged backup/i.test(m.subject ?? '') && m.text!.includes(broken!.id));
    expect(about).toHaveLength(1);
    expect(about[0]!.text).toContain('the manifest is not valid JSON');
  });

  it('a record of a check that could not run never hides a damaged backup', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const [m] = await takeBackups(env, 1);
    flipByte(path.join(backupsDir(dir), m!.file));
    await cli(['verify', '--checksums-only'], env, 31);
    expect((await listNames(env))[0]!.state).toBe('DAMAGED');
    // a drill by a role that may not create the scratch database proves nothing either way
    const role = `nocreatedb_${db.slice(-8)}`;
    await query('postgres', `CREATE ROLE ${role} LOGIN PASSWORD 'pw-${role}'`);
    onTestFinished(() => query('postgres', `DROP ROLE IF EXISTS ${role}`).then(() => undefined));
    const r = await runCli(['verify', m!.id], { ...env, VERIFY_DB_USER: role, VERIFY_DB_PASSWORD: `pw-${role}` });
    expect(r.code).not.toBe(0);
    const v = JSON.parse(fs.readFileSync(path.join(backupsDir(dir), `${m!.id}.verify.json`), 'utf8')) as Verification;
    expect(v).toMatchObject({ kind: 'checksum', ok: false, error_code: 'DAMAGED' });
    expect((await listNames(env))[0]!.state).toBe('DAMAGED');
  });

  it('list fits 120 columns when a backup is damaged: the table says DAMAGED, the whole reason is under it and in --json', async () => {
    const db = await createWebserverDb(5);
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const [m] = await takeBackups(env, 1);
    const reason = `pg_restore: error: could not read from input file: ${'the archive ends early at block 4711; '.repeat(10)}end`;
    const [damaged] = copiesOf(dir, m!, 1, { drillError: reason });
    const [long] = copiesOf(dir, m!, 1, { hoursBefore: 1 });
    const label = 'x'.repeat(200);
    const file = path.join(backupsDir(dir), `${long!}.manifest.json`);
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), label }));

    const text = (await cli(['list'], env)).stdout;
    const lines = text.trimEnd().split('\n');
    for (const line of lines) expect([...line].length, line).toBeLessThanOrEqual(120);
    expect(text).toMatch(new RegExp(`│ ${damaged!} +│ .*│ DAMAGED +│`));
    expect(text).toMatch(new RegExp(`│ ${m!.id} +│ .*│ ok +│`));
    // the reason in full under the table, wrapped
    const note = lines.slice(lines.findIndex((l) => l.startsWith(`${damaged!} DAMAGED: `)));
    expect(note.join(' ').replace(/\s+/g, ' ')).toBe(
      `${damaged!} DAMAGED: failed its restore drill at ${new Date(Date.parse(m!.created_at) - 3600_000).toISOString()}: ${reason}`,
    );
    // and whole in list --json
    const listed = await listNames(env);
    expect(listed.find((x) => x.id === damaged)!.damage).toContain(reason);
    expect(listed.find((x) => x.id === long)!.label).toBe(label);
  });
});
