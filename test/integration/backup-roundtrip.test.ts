import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { backupEnv, listJson, runCli, tempDir } from '../helpers/cli';
import { createTestDb, createWebserverDb, pgInfo, tableCounts } from '../helpers/pg';

describe('a backup restores', () => {
  it('custom format: pg_restore into a new database gives identical rows, files are private', async () => {
    const db = await createWebserverDb(30);
    const dir = tempDir();
    const env = backupEnv(db, dir);
    const r = await runCli(['backup', '--label', 'roundtrip'], env);
    expect(r.stderr).not.toContain(pgInfo().password);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Backup completed: .*\.dump\.zst \(/);

    const list = await listJson<{ file: string; sha256: string; label: string; format: string }>(env);
    expect(list).toHaveLength(1);
    const m = list[0]!;
    expect(m.label).toBe('roundtrip');
    expect(m.format).toBe('custom');
    expect(path.basename(m.file)).toMatch(new RegExp(`^${db}_\\d{8}T\\d{6}Z\\.dump\\.zst$`));
    expect(fs.statSync(m.file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(m.file)).mode & 0o777).toBe(0o700);

    // The other tests read `list --json` in-process (listJson); the command prints the same rows.
    fs.writeFileSync(path.join(path.dirname(m.file), `${db}_20200101T000000Z.dump`), 'left by a crash');
    for (const args of [[], ['--all']]) {
      const printed = await runCli(['list', '--json', ...args], env);
      expect(printed.code, printed.stderr).toBe(0);
      expect(JSON.parse(printed.stdout)).toEqual(await listJson(env, args));
    }
    expect((await listJson<{ state: string }>(env, ['--all'])).map((x) => x.state)).toEqual(['ok', 'ORPHAN']);

    const target = await createTestDb('restored');
    const info = pgInfo();
    // the standard tools open it, as the manifest's restore_command says
    execFileSync('bash', ['-o', 'pipefail', '-c', 'zstd -dc "$1" | pg_restore --exit-on-error --no-owner -d "$2"', 'x', m.file, target], {
      env: {
        ...process.env,
        PATH: `${info.binDir}:${process.env.PATH}`,
        PGHOST: info.host,
        PGPORT: String(info.port),
        PGUSER: info.user,
        PGPASSWORD: info.password,
      },
    });
    expect(await tableCounts(target)).toEqual(await tableCounts(db));
    expect((await tableCounts(target))['public.users']).toBe(30);
  });
});
