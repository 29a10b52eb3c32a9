import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadEnv, valueSource } from '../../src/config/env-files';
import { clipBytes, fitName } from '../../src/pg/names';
import { byHandScript, shellQuote, type ByHandInput } from '../../src/restore/by-hand';
import { restoreDbName, type RestorePlan } from '../../src/restore/plan';
import type { Manifest } from '../../src/repository/manifest';

describe('names restore gives new databases', () => {
  it('generated names fit in 63 bytes, cutting the database name by whole characters', () => {
    const stamp = '20261201t100000z';
    expect(restoreDbName('webserver_db', 'restored', stamp)).toBe('webserver_db_restored_20261201t100000z');
    expect(restoreDbName('webserver_db', 'tables', stamp, 3)).toBe('webserver_db_tables_20261201t100000z_3');
    const live = 'a'.repeat(40);
    for (const kind of ['restored', 'before_restore', 'tables'] as const) {
      for (const n of [1, 2, 12]) {
        const name = restoreDbName(live, kind, stamp, n);
        expect(Buffer.byteLength(name)).toBeLessThanOrEqual(63);
        expect(name.endsWith(`_${kind}_${stamp}${n > 1 ? `_${n}` : ''}`)).toBe(true);
        expect(live.startsWith(name.slice(0, name.indexOf(`_${kind}_`)))).toBe(true);
      }
    }
    expect(restoreDbName('a'.repeat(40), 'before_restore', stamp)).toBe(`${'a'.repeat(31)}_before_restore_${stamp}`);
    const multi = restoreDbName('ü'.repeat(30), 'restored', stamp);
    expect(multi).toBe(`${'ü'.repeat(18)}_restored_${stamp}`);
    expect(Buffer.byteLength(multi)).toBe(62);
    expect(clipBytes('aü', 2)).toBe('a');
    expect(fitName('db', '_x')).toBe('db_x');
  });
});

describe('valueSource: how a by-hand command reads a secret without printing it', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('a sed line exactly when it prints what dotenv read; else nothing', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-unit-'));
    dirs.push(dir);
    const file = path.join(dir, 'app env');
    fs.writeFileSync(
      file,
      [
        'DB_PASSWORD=old',
        "DB_PASSWORD=s3cr3t-pw$with'quote",
        "S3_ACCESS_KEY_ID='AKIA KEY'",
        'S3_SECRET_ACCESS_KEY="plain-secret"',
        'SMTP_PASSWORD=commented # note',
        'SPACES_TOKEN=tok',
      ].join('\n') + '\n',
    );
    const env = loadEnv([file], { OTHER_SECRET: 'from-env' }, dir);
    const pw = valueSource(env, "s3cr3t-pw$with'quote", ['DB_PASSWORD']);
    expect(pw).toEqual({ variable: 'DB_PASSWORD', file, reader: `sed -n 's/^DB_PASSWORD=//p' '${dir}/app env' | tail -n 1` });
    expect(valueSource(env, 'AKIA KEY', ['S3_ACCESS_KEY_ID']).reader).toBe(
      `sed -n 's/^S3_ACCESS_KEY_ID='\\''\\(.*\\)'\\''$/\\1/p' '${dir}/app env' | tail -n 1`,
    );
    expect(valueSource(env, 'plain-secret', ['S3_SECRET_ACCESS_KEY']).reader).toBe(
      `sed -n 's/^S3_SECRET_ACCESS_KEY="\\(.*\\)"$/\\1/p' '${dir}/app env' | tail -n 1`,
    );
    expect(valueSource(env, 'commented', ['SMTP_PASSWORD'])).toEqual({ variable: 'SMTP_PASSWORD', file, reader: undefined });
    expect(valueSource(env, 'tok', [])).toEqual({ variable: 'SPACES_TOKEN', file, reader: expect.stringContaining('SPACES_TOKEN') as string });
    expect(valueSource(env, 'from-env', [])).toEqual({ variable: 'OTHER_SECRET', file: undefined, reader: undefined });
    expect(valueSource(env, 'nowhere', ['DB_PASSWORD'])).toEqual({ variable: undefined, file: undefined, reader: undefined });
  });
});

describe('byHandScript', () => {
  const manifest = {
    id: 'shop_20261201T020000Z',
    file: 'shop_20261201T020000Z.dump',
    sha256: 'ab'.repeat(32),
    size_bytes: 1234,
    format: 'custom',
    created_at: '2026-12-01T02:00:00.000Z',
    roles_file: 'shop_20261201T020000Z.roles.sql',
  } as Manifest;
  const plan: RestorePlan = {
    manifest,
    live: 'shop',
    liveExists: true,
    owner: 'deploy',
    target: 'shop_restored_20261201t100000z',
    previous: undefined,
    tables: [],
    replace: false,
    dropOld: false,
    app: undefined,
    withRoles: false,
    text: '',
  };
  const base: ByHandInput = {
    plan,
    db: { host: 'db.internal', port: 5433, user: 'deploy', sslmode: undefined },
    password: { variable: 'DB_PASSWORD', file: '/home/deploy/server-ui/.env', reader: "sed -n 's/^DB_PASSWORD=//p' /home/deploy/server-ui/.env | tail -n 1" },
    location: { kind: 'local', dataPath: '/home/deploy/backups/shop_20261201T020000Z.dump', rolesPath: undefined },
    binDir: '/usr/lib/postgresql/16/bin',
    pm2Bin: 'pm2',
  };
  const commands = (s: string) => s.split('\n').filter((l) => l !== '' && !l.startsWith('#'));

  it('custom from local disk: password from the env file, sha256, createdb, pg_restore with this host', () => {
    expect(commands(byHandScript(base))).toEqual([
      `export PGPASSWORD="$(sed -n 's/^DB_PASSWORD=//p' /home/deploy/server-ui/.env | tail -n 1)"    # DB_PASSWORD from /home/deploy/server-ui/.env`,
      `echo '${'ab'.repeat(32)}  /home/deploy/backups/shop_20261201T020000Z.dump' | sha256sum -c -`,
      '/usr/lib/postgresql/16/bin/createdb -h db.internal -p 5433 -U deploy -T template0 -O deploy shop_restored_20261201t100000z',
      '/usr/lib/postgresql/16/bin/pg_restore --exit-on-error -h db.internal -p 5433 -U deploy -d shop_restored_20261201t100000z /home/deploy/backups/shop_20261201T020000Z.dump',
      'unset PGPASSWORD',
    ]);
    expect(byHandScript(base)).toContain('# ~/.pgpass, chmod 600, as the line db.internal:5433:*:deploy:PASSWORD');
  });

  it('a password from the environment, one it cannot read simply, or none; sslmode', () => {
    const env = byHandScript({ ...base, password: { variable: 'DB_PASSWORD', file: undefined, reader: undefined }, db: { ...base.db, sslmode: 'require' } });
    expect(commands(env).slice(0, 2)).toEqual([
      'export PGPASSWORD="$DB_PASSWORD"    # DB_PASSWORD, as set in the environment basement-backup ran in',
      'export PGSSLMODE=require',
    ]);
    const asked = byHandScript({ ...base, password: { variable: undefined, file: undefined, reader: undefined } });
    expect(commands(asked)[0]).toBe("read -rsp 'database password: ' PGPASSWORD </dev/tty && echo && export PGPASSWORD    # type or paste it; it is not shown");
    const none = byHandScript({ ...base, password: undefined });
    expect(none).not.toContain('PGPASSWORD="');
    expect(none).not.toContain('unset PGPASSWORD');
  });

  it('plain, from a bucket, replacing the live database with the app stopped and the old one dropped', () => {
    const script = byHandScript({
      ...base,
      plan: {
        ...plan,
        manifest: { ...manifest, format: 'plain', file: 'shop_20261201T020000Z.sql.gz' },
        replace: true,
        dropOld: true,
        previous: 'shop_before_restore_20261201t100000z',
        app: { name: 'cloudedbasement', id: 0, status: 'online' },
      },
      binDir: undefined,
      location: {
        kind: 's3',
        target: 's3',
        endpoint: 'https://fra1.digitaloceanspaces.com',
        region: 'fra1',
        bucket: 'backups',
        prefix: 'basement/',
        accessKeyId: { variable: 'S3_ACCESS_KEY_ID', file: undefined, reader: undefined },
        secretAccessKey: { variable: undefined, file: undefined, reader: undefined },
      },
    });
    expect(commands(script).slice(1)).toEqual([
      'export AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY_ID"    # S3_ACCESS_KEY_ID, as set in the environment basement-backup ran in',
      "read -rsp 'bucket secret access key: ' AWS_SECRET_ACCESS_KEY </dev/tty && echo && export AWS_SECRET_ACCESS_KEY    # type or paste it; it is not shown",
      'aws s3 cp --only-show-errors --endpoint-url https://fra1.digitaloceanspaces.com --region fra1 s3://backups/basement/shop_20261201T020000Z.sql.gz ./shop_20261201T020000Z.sql.gz',
      'unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY',
      `echo '${'ab'.repeat(32)}  ./shop_20261201T020000Z.sql.gz' | sha256sum -c -`,
      'createdb -h db.internal -p 5433 -U deploy -T template0 -O deploy shop_restored_20261201t100000z',
      'gunzip -c ./shop_20261201T020000Z.sql.gz | psql -X -q -v ON_ERROR_STOP=1 -h db.internal -p 5433 -U deploy -d shop_restored_20261201t100000z',
      'pm2 stop cloudedbasement',
      `psql -X -v ON_ERROR_STOP=1 -h db.internal -p 5433 -U deploy -d postgres -c 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\\''shop'\\'' AND pid <> pg_backend_pid()' -c 'ALTER DATABASE "shop" RENAME TO "shop_before_restore_20261201t100000z"'`,
      `psql -X -v ON_ERROR_STOP=1 -h db.internal -p 5433 -U deploy -d postgres -c 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\\''shop_restored_20261201t100000z'\\'' AND pid <> pg_backend_pid()' -c 'ALTER DATABASE "shop_restored_20261201t100000z" RENAME TO "shop"'`,
      'pm2 start cloudedbasement',
      `psql -X -v ON_ERROR_STOP=1 -h db.internal -p 5433 -U deploy -d postgres -c 'DROP DATABASE "shop_before_restore_20261201t100000z"'`,
      'unset PGPASSWORD',
    ]);
  });

  it('quotes what the shell or libpq would read otherwise', () => {
    expect(shellQuote('plain_name-1.dump')).toBe('plain_name-1.dump');
    expect(shellQuote("it's $HOME")).toBe(`'it'\\''s $HOME'`);
    const odd = byHandScript({ ...base, plan: { ...plan, live: 'shop=x', target: "shop=x's copy", owner: undefined } });
    expect(odd).toContain(`-T template0 'shop=x'\\''s copy'`);
    expect(odd).toContain(`-d 'dbname='\\''shop=x\\'\\''s copy'\\''' `);
  });
});
