import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { takeBackup } from '../helpers/app';
import { backupEnv, runCli, spawnCli, tempDir, waitFor } from '../helpers/cli';
import { ageDays, backupsDir } from '../helpers/damaged';
import { smallDb } from '../helpers/daemon';
import { bearer, daemonWithHttp, NEVER, request, TOKEN } from '../helpers/http';
import { metricValue, parseMetrics } from '../helpers/prom';

interface Health {
  status: string;
  reasons: { title: string; message: string; fix: string }[];
}

const health = async (url: string) => {
  const r = await request(`${url}healthz`);
  return { status: r.status, body: JSON.parse(r.body) as Health };
};

describe('the HTTP server (BACKUP_HTTP_PORT)', () => {
  it('/healthz is open; the page needs the token; it only reads; errors are JSON; no secret in any answer', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_HTTP_PORT: '0', BACKUP_HTTP_TOKEN: TOKEN });
    await takeBackup(env);
    const { url } = await daemonWithHttp(env);

    const answers = [];
    const ok = await health(url);
    expect(ok).toMatchObject({ status: 200, body: { status: 'ok', reasons: [] } });

    const noToken = await request(url);
    expect(noToken.status).toBe(401);
    expect(noToken.headers['www-authenticate']).toMatch(/^Basic /);
    expect(JSON.parse(noToken.body)).toMatchObject({ error: 'unauthorized', fix: expect.stringMatching(/Authorization: Bearer/) as unknown });
    expect((await request(url, { headers: bearer('wrong-token-of-the-same-size') })).status).toBe(401);
    expect((await request(`${url}metrics`)).status).toBe(401);

    const page = await request(url, { headers: bearer() });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toMatch(/default-src 'none'/);
    expect(page.body).toContain(`data-database="${db}"`);
    const basic = await request(url, { headers: { Authorization: `Basic ${Buffer.from(`anyone:${TOKEN}`).toString('base64')}` } });
    expect(basic.status).toBe(200);

    const metrics = await request(`${url}metrics`, { headers: bearer() });
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = parseMetrics(metrics.body);
    expect(metricValue(families, 'basement_backup_good_backups', { database: db, target: 'local' })).toBe(1);
    expect(families.has('process_resident_memory_bytes')).toBe(true);

    const post = await request(`${url}healthz`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    expect(JSON.parse(post.body)).toMatchObject({ error: expect.stringMatching(/only reads/) as unknown });
    const head = await request(url, { method: 'HEAD', headers: bearer() });
    expect(head).toMatchObject({ status: 200, body: '' });
    const missing = await request(`${url}nope`, { headers: bearer() });
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body)).toMatchObject({ pages: ['/', '/healthz', '/metrics'] });

    answers.push(ok, noToken, page, metrics, post, missing);
    for (const a of answers) {
      const text = JSON.stringify(a);
      expect(text).not.toContain(env.DB_PASSWORD);
      expect(text).not.toContain(TOKEN);
      expect(text).not.toMatch(/\n\s+at /);
    }
  });

  it('/healthz turns 503 when the newest backup is older than the maximum age, and 200 again after a good backup', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_MAX_AGE_HOURS: '26', BACKUP_CHECK_MINUTES: '0.02' });
    ageDays(dir, await takeBackup(env), 2);
    const { url } = await daemonWithHttp(env);

    const stale = await health(url);
    expect(stale.status).toBe(503);
    expect(stale.body.status).toBe('failing');
    expect(stale.body.reasons).toEqual([
      expect.objectContaining({ title: `No recent backup of ${db} on local`, message: expect.stringMatching(/2d 0h old; the limit is 26h 0m/) as unknown }),
    ]);

    const r = await runCli(['backup'], env);
    expect(r.code, r.stderr).toBe(0);
    await waitFor(async () => (await health(url)).status === 200, 30_000, '/healthz to turn 200 after the backup');
    expect((await health(url)).body).toMatchObject({ status: 'ok', reasons: [] });
  });

  it('/healthz turns 503 when the last restore drill failed, and 200 again after a drill that passes', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir, { BACKUP_CHECK_MINUTES: '0.02', VERIFY_SCHEDULE: NEVER });
    // a failed drill marks its backup damaged: a newer good one keeps the maximum age apart from it
    const m = await takeBackup(env);
    const drill = { kind: 'drill', verified_at: new Date().toISOString(), ok: false, checksum_ok: true, restore_ms: null, tables_checked: 0, rows_checked: 0 };
    const record = { ...drill, mismatches: [], error: 'pg_restore failed: out of memory', error_code: 'RESTORE_FAILED', server: 'localhost:5432' };
    fs.writeFileSync(path.join(backupsDir(dir), `${m.id}.verify.json`), JSON.stringify(record) + '\n');
    await takeBackup(env);
    const { url } = await daemonWithHttp({ ...env, VERIFY_SCHEDULE: NEVER });

    const failed = await health(url);
    expect(failed.status).toBe(503);
    expect(failed.body.reasons).toEqual([
      expect.objectContaining({
        title: `The restore drill of ${db} failed`,
        message: expect.stringMatching(/out of memory/) as unknown,
        fix: expect.stringMatching(/verify/) as unknown,
      }),
    ]);

    // the daemon's start-up clean-up holds the drill lock for a moment: a verify refused by it is run again
    let v = await runCli(['verify'], env, { timeoutMs: 120_000 });
    for (let i = 0; i < 20 && v.code !== 0 && /start-up cleanup .* holds the lock/.test(v.stderr); i++) {
      await new Promise((r) => setTimeout(r, 500));
      v = await runCli(['verify'], env, { timeoutMs: 120_000 });
    }
    expect(v.code, v.stderr).toBe(0);
    await waitFor(async () => (await health(url)).status === 200, 30_000, '/healthz to turn 200 after a good drill');
  });

  it('a port in use stops the daemon at start: exit 2, naming BACKUP_HTTP_PORT and the fix, no stack trace', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const other = net.createServer();
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    onTestFinished(() => new Promise<void>((r) => other.close(() => r())));
    const port = (other.address() as net.AddressInfo).port;
    const d = spawnCli(['daemon'], backupEnv(db, dir, { BACKUP_SCHEDULE: NEVER, BACKUP_HTTP_PORT: String(port) }));
    expect(await d.exited).toBe(2);
    expect(d.output()).toMatch(new RegExp(`BACKUP_HTTP_PORT: port ${port} on 127.0.0.1 is already in use`));
    expect(d.output()).toMatch(/set BACKUP_HTTP_PORT to a free port/);
    expect(d.output()).not.toMatch(/\n\s+at /);
    expect(d.output()).not.toMatch(/backup started|next scheduled backup/);
  });

  it('a client that connects and never sends a request is dropped, and others are answered meanwhile', async () => {
    const db = await smallDb();
    const dir = tempDir();
    const env = backupEnv(db, dir);
    await takeBackup(env);
    const { url } = await daemonWithHttp(env);
    const { hostname, port } = new URL(url);
    const silent = net.connect(Number(port), hostname);
    const halfway = net.connect(Number(port), hostname, () => halfway.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'));
    const closed = (s: net.Socket) => new Promise<void>((r) => s.once('close', () => r()));
    onTestFinished(() => {
      silent.destroy();
      halfway.destroy();
    });
    expect((await health(url)).status).toBe(200);
    // the server's headers timeout (5 s) ends both; the test's own deadline is far above it
    await Promise.all([closed(silent), closed(halfway)]);
  });
});
