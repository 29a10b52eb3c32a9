import net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { backupEnv, spawnCli, tempDir, waitFor } from '../helpers/cli';
import { smallDb, tempFiles } from '../helpers/daemon';

/** Once a year: the catch-up runs at start, the next scheduled run is far away. */
const YEARLY = '0 0 1 1 *';

/** A request the silent server received: its first line ("GET /backups?uploads HTTP/1.1") and when. */
interface Received {
  line: string;
  at: number;
}

/**
 * A server on 127.0.0.1 that accepts connections and never answers; closed when the test finishes.
 * `requests` holds every request it received, in order.
 */
async function silentServer(): Promise<{ port: number; requests: Received[] }> {
  const sockets = new Set<net.Socket>();
  const requests: Received[] = [];
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n')) return;
      requests.push({ line: head.slice(0, head.indexOf('\r\n')), at: Date.now() });
      s.off('data', onData);
    };
    s.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTestFinished(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return { port: (server.address() as net.AddressInfo).port, requests };
}

/** When the daemon logged the first line of `output` matching `re` (its lines start with an ISO time). */
function loggedAt(output: string, re: RegExp): number {
  const line = output.split('\n').find((l) => re.test(l));
  const at = Date.parse(line?.split(' ')[0] ?? '');
  if (Number.isNaN(at)) throw new Error(`no time on the line matching ${re} in:\n${output}`);
  return at;
}

async function silentTargetEnv(): Promise<{ env: Record<string, string>; dir: string; requests: Received[] }> {
  const { port, requests } = await silentServer();
  const db = await smallDb();
  const dir = tempDir();
  const env = backupEnv(db, dir, {
    BACKUP_SCHEDULE: YEARLY,
    S3_ENDPOINT: `http://127.0.0.1:${port}`,
    S3_REGION: 'us-east-1',
    S3_BUCKET: 'backups',
    S3_ACCESS_KEY_ID: 'key-id',
    S3_SECRET_ACCESS_KEY: 'secret-key',
    S3_FORCE_PATH_STYLE: 'true',
    SHUTDOWN_GRACE_SECONDS: '30',
  });
  return { env, dir, requests };
}

describe('the daemon with a storage target that never answers', () => {
  it('starts at once (next run logged) and exits 0 on SIGTERM during the start-up work', async () => {
    const { env, requests } = await silentTargetEnv();
    const t0 = Date.now();
    const d = spawnCli(['daemon'], env);
    await d.waitForOutput(/next scheduled backup at \d{4}-01-01T00:00:00\.000Z/, 10_000);
    expect(Date.now() - t0).toBeLessThan(10_000);

    // the start-up cleanup now waits on the silent target (its listing of unfinished uploads)
    await waitFor(() => requests.some((r) => r.line.includes('uploads')), 15_000, 'the start-up cleanup to ask the silent target');
    const stopAt = Date.now();
    d.child.kill('SIGTERM');
    expect(await d.exited, d.output()).toBe(0);
    expect(Date.now() - stopAt).toBeLessThan(5_000);
    expect(d.output()).toContain('daemon stopped');
    expect(d.output()).not.toContain('backup started');
  });

  it('a backup stuck on the target: a second SIGTERM forces the stop within seconds, and the exit is clean', async () => {
    const { env, dir, requests } = await silentTargetEnv();
    const d = spawnCli(['daemon'], env);
    await d.waitForOutput(/next scheduled backup at/, 10_000);
    // The start-up cleanup gives up on the target after its deadline; the catch-up backup then
    // runs and waits on the target in turn.
    await d.waitForOutput(/storage target s3 did not answer within \d+s/, 30_000);
    await d.waitForOutput(/starting the catch-up run/, 10_000);
    // the start-up work's requests still hang (and may be tried again): the backup's are the ones
    // sent after it started
    const started = loggedAt(d.output(), /starting the catch-up run/);
    await waitFor(() => requests.some((r) => r.at >= started), 15_000, 'the catch-up backup to ask the silent target');

    d.child.kill('SIGTERM');
    await d.waitForOutput(/waiting up to 30s for the running backup to finish/, 5_000);
    const forcedAt = Date.now();
    d.child.kill('SIGTERM');
    expect(await d.exited, d.output()).toBe(0);
    expect(Date.now() - forcedAt).toBeLessThan(10_000);
    expect(d.output()).toContain('SIGTERM received again: forcing');
    // the forced stop cancels the requests to the silent target, so the backup ends as interrupted
    expect(d.output()).toMatch(/backup interrupted/);
    expect(d.output()).not.toMatch(/backup failed/);
    expect(d.output()).toContain('daemon stopped');
    expect(tempFiles(dir)).toEqual([]);
  });
});
