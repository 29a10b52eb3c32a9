import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from '../../scripts/lib/cluster';
import { WEBSERVER_SCHEMA, webserverRows } from '../../scripts/lib/seed-db';
import { backupEnv, runCli, tempDir } from '../helpers/cli';

/**
 * A server that accepts only TLS connections (hostssl in pg_hba.conf), as managed databases
 * often do: with DB_SSLMODE unset, basement-backup must connect the way pg_dump does (TLS
 * first), not fail where pg_dump would work.
 */
describe('a server that only accepts TLS', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await startCluster();
    const certDir = path.join(cluster.baseDir, 'tls');
    fs.mkdirSync(certDir, { mode: 0o755 });
    const key = path.join(certDir, 'server.key');
    const crt = path.join(certDir, 'server.crt');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-keyout', key, '-out', crt], {
      stdio: 'ignore',
    });
    if (process.getuid?.() === 0) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
      fs.chownSync(key, uid, gid);
      fs.chownSync(crt, uid, gid);
    }
    fs.chmodSync(key, 0o600);
    fs.writeFileSync(path.join(cluster.dataDir, 'pg_hba.conf'), 'local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n');
    await cluster.query('postgres', `ALTER SYSTEM SET ssl = on`);
    await cluster.query('postgres', `ALTER SYSTEM SET ssl_cert_file = '${crt}'`);
    await cluster.query('postgres', `ALTER SYSTEM SET ssl_key_file = '${key}'`);
    await cluster.query('postgres', 'SELECT pg_reload_conf()');
    // the reload is asynchronous: wait until a plain connection is refused
    for (let i = 0; i < 50; i++) {
      const plain = new pg.Client({ host: cluster.host, port: cluster.port, user: cluster.user, password: cluster.password, database: 'postgres' });
      const refused = await plain.connect().then(
        () => false,
        () => true,
      );
      await plain.end().catch(() => undefined);
      if (refused) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  afterAll(() => cluster?.stop());

  it('refuses plain connections, and backup and verify still work without DB_SSLMODE', async () => {
    const plain = new pg.Client({ host: cluster.host, port: cluster.port, user: cluster.user, password: cluster.password, database: 'postgres' });
    await expect(plain.connect()).rejects.toThrow(/no pg_hba\.conf entry|no encryption/);
    await plain.end().catch(() => undefined);

    const tls = new pg.Client({
      host: cluster.host,
      port: cluster.port,
      user: cluster.user,
      password: cluster.password,
      database: 'postgres',
      ssl: { rejectUnauthorized: false },
    });
    await tls.connect();
    await tls.query('CREATE DATABASE webserver_db');
    await tls.end();
    const db = new pg.Client({
      host: cluster.host,
      port: cluster.port,
      user: cluster.user,
      password: cluster.password,
      database: 'webserver_db',
      ssl: { rejectUnauthorized: false },
    });
    await db.connect();
    await db.query(WEBSERVER_SCHEMA + webserverRows(10));
    await db.end();

    const dir = tempDir();
    const env = backupEnv('webserver_db', dir, {
      DB_HOST: cluster.host,
      DB_PORT: String(cluster.port),
      DB_PASSWORD: cluster.password,
      PG_BIN_DIR: cluster.binDir,
    });
    const b = await runCli(['backup'], env);
    expect(b.code, b.stderr).toBe(0);
    const v = await runCli(['verify', '--json'], env);
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: true, checksum_ok: true, tables_checked: 7 });

    // and an explicit DB_SSLMODE=disable fails clearly instead of silently using TLS
    const off = await runCli(['backup'], { ...env, DB_SSLMODE: 'disable' });
    expect(off.code).toBe(11);
    expect(off.stderr).toMatch(/login refused/);
    // and names the setting that is wrong: DB_SSLMODE, not the host or the login
    expect(off.stderr).toMatch(/the server accepts only encrypted connections from here .*, and sslmode is disable/);
    expect(off.stderr).toMatch(/fix: Unset DB_SSLMODE .* or set it to require/);

    // a certificate that cannot be verified names DB_SSLMODE too (it was "database error", exit 20, no fix)
    const verify = await runCli(['backup'], { ...env, DB_SSLMODE: 'verify-full' });
    expect(verify.code, verify.stderr).toBe(10);
    expect(verify.stderr).toMatch(/the server's certificate could not be verified, and sslmode is verify-full/);
    expect(verify.stderr).toMatch(/fix: Trust the CA .* or set DB_SSLMODE .* to require/);
  });
});

describe('a server without TLS', () => {
  it('DB_SSLMODE=require names DB_SSLMODE, not DB_HOST/DB_PORT', async () => {
    const dir = tempDir();
    const env = backupEnv('postgres', dir, { DB_SSLMODE: 'require' });
    const r = await runCli(['backup'], env);
    expect(r.code, r.stderr).toBe(10);
    expect(r.stderr).toMatch(/the server does not offer TLS, and sslmode is require/);
    expect(r.stderr).toMatch(/fix: Turn on ssl .*, or set DB_SSLMODE .* to prefer .* or disable/);
    expect(r.stderr).not.toContain('DB_HOST');
  });
});
