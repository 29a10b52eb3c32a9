/**
 * The HTTP server under a bounded load on loopback while the daemon's backup runs: every answer
 * right, the daemon's memory bounded, the requests paced by BACKUP_HTTP_BUSY_RATE while the backup
 * runs, the latency reported (not asserted: a shared 2-core machine says nothing reliable about
 * milliseconds). The effect on the backup's duration is measured by
 * `npm run bench` (bench/http-load.ts), where it can be timed without a test beside it.
 */
import { describe, expect, it } from 'vitest';
import { takeBackup } from '../helpers/app';
import { backupEnv, tempDir, waitFor } from '../helpers/cli';
import { ageDays } from '../helpers/damaged';
import { manifestsOnDisk, pgDumpBlocked, smallDb } from '../helpers/daemon';
import { bearer, daemonWithHttp, TOKEN } from '../helpers/http';
import { load, memoryMb, quantile } from '../../scripts/lib/http-load';
import { lockTable } from '../helpers/pg';

const REQUESTS = 10_000;
const CONCURRENCY = 50;
const MAX_RSS_MB = 150;
/** While the backup runs the server answers this many requests a second (BACKUP_HTTP_BUSY_RATE; 50 unless set). */
const BUSY_RATE = 2_000;

describe('the HTTP server under load', () => {
  it(`answers ${REQUESTS} requests, ${CONCURRENCY} at a time, to /metrics, /healthz and / during a backup, within ${MAX_RSS_MB} MB`, async () => {
    const db = await smallDb();
    const dir = tempDir();
    // a daily schedule and a backup from the day before: the daemon catches up at start, and
    // pg_dump waits on a table lock for as long as the load runs
    const env = backupEnv(db, dir, {
      BACKUP_SCHEDULE: '0 0 * * *',
      BACKUP_MAX_AGE_HOURS: '72',
      BACKUP_HTTP_PORT: '0',
      BACKUP_HTTP_TOKEN: TOKEN,
      BACKUP_HTTP_BUSY_RATE: String(BUSY_RATE),
    });
    ageDays(dir, await takeBackup(env), 1.5);
    const lock = await lockTable(db, 'items');
    const { daemon, url } = await daemonWithHttp(env);
    await pgDumpBlocked(db);

    const started = performance.now();
    const r = await load(url, ['/metrics', '/healthz', '/'], REQUESTS, CONCURRENCY, bearer());
    const seconds = (performance.now() - started) / 1000;
    const mem = memoryMb(daemon.child.pid!);
    console.log(
      `${REQUESTS} requests, ${CONCURRENCY} at a time, in ${seconds.toFixed(1)} s: p50 ${quantile(r.latenciesMs, 0.5).toFixed(1)} ms, ` +
        `p99 ${quantile(r.latenciesMs, 0.99).toFixed(1)} ms, max ${Math.max(...r.latenciesMs).toFixed(1)} ms; daemon RSS ${mem.rss.toFixed(0)} MB, peak ${mem.peak.toFixed(0)} MB`,
    );
    expect({ failed: r.failed, firstError: r.firstError }).toEqual({ failed: 0, firstError: undefined });
    expect(Object.fromEntries(r.statuses)).toEqual({ 200: REQUESTS });
    expect(mem.peak).toBeLessThan(MAX_RSS_MB);
    // the server yielded to the backup: no faster than BACKUP_HTTP_BUSY_RATE, whatever the clients sent
    expect(seconds).toBeGreaterThanOrEqual((REQUESTS - 1) / BUSY_RATE);

    // the backup waited on its lock the whole time, and ends well once it is released
    await pgDumpBlocked(db);
    await lock.release();
    await waitFor(() => manifestsOnDisk(dir).length === 2, 60_000, 'the catch-up backup to end');
    expect(daemon.output()).not.toMatch(/backup failed/i);
  });
});
