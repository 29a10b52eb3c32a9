/**
 * The demo's point-in-time recovery, scenario 1 of the README: the WAL receiver streams every
 * change to the targets, a base backup is taken, a payment is committed, then someone deletes the
 * support tickets by mistake; `pitr-restore --to` the second between the two brings back a side
 * cluster where the payment is there and the tickets too, and `pg_dump -t` copies the table back.
 * As root, the recovered server runs as `postgres` (PostgreSQL refuses root), as on the server.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, type Cluster } from './cluster';

type Cli = (args: string[], opts?: { uid?: number; gid?: number; echo?: boolean }) => Promise<string>;

const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The uid and gid a recovered server runs as: postgres when this is root, else this user. */
function serverUser(): { uid?: number; gid?: number } {
  if (!isRoot) return {};
  return { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) };
}

async function waitUntil(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** Runs `bash -c command` (pipefail) with a deadline. */
function shell(command: string, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', ['-o', 'pipefail', '-c', command], { env, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${command}: ${stderr || err.message}`)) : resolve(stdout),
    );
  });
}

export interface PitrDemo {
  cluster: Cluster;
  /** A 0600 env file with the demo's settings: restore_command's wal-fetch reads it too. */
  envFile: string;
  work: string;
  database: string;
  cli: Cli;
  cliPath: string;
  write: (text: string) => void;
}

export async function showPointInTimeRecovery(d: PitrDemo): Promise<void> {
  const { cluster, write } = d;
  const q = async (sql: string, port = cluster.port) =>
    port === cluster.port ? cluster.query(d.database, sql) : await queryOn(cluster, port, d.database, sql);
  write('$ basement-backup wal-receive   (the daemon does this with WAL_RECEIVE=on)\n');
  const receiver = spawn(process.execPath, [d.cliPath, '--env-file', d.envFile, 'wal-receive'], {
    cwd: d.work,
    env: { PATH: process.env.PATH, HOME: d.work },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let receiverLog = '';
  receiver.stdout.on('data', (b: Buffer) => (receiverLog += b.toString()));
  receiver.stderr.on('data', (b: Buffer) => (receiverLog += b.toString()));
  const pgdata = path.join(d.work, 'recovered');
  let recoveredPort: number | undefined;
  try {
    // as an operator does: the receiver streams (its slot holds the WAL from here on) before the
    // first base backup, whose WAL starts where the server was when it began (started side by
    // side, the slot may come after pg_basebackup's switch, and that segment is never received)
    await waitUntil('the WAL receiver to stream', 60_000, () => /starting log streaming at/.test(receiverLog));
    await d.cli(['--env-file', d.envFile, 'basebackup']);

    await q(`INSERT INTO payments (user_id, stripe_id, amount_cents, status) VALUES (1, 'pi_paid_at_16_59', 4900, 'succeeded')`);
    write('16:59 (in the story) a customer pays: INSERT INTO payments … committed\n');
    await sleep(1100);
    const [{ t: before }] = (await q('SELECT now()::text AS t')) as [{ t: string }];
    await sleep(1100);
    await q('DELETE FROM support_tickets');
    write(`17:00 someone runs DELETE FROM support_tickets by mistake. The moment between the two: ${before}\n`);
    await archived(d, q);
    const status = JSON.parse(await d.cli(['--env-file', d.envFile, 'status', '--json'], { echo: false })) as { recovery_window?: unknown };
    write(`$ basement-backup status --json | jq .recovery_window\n${JSON.stringify(status.recovery_window, null, 2)}\n`);

    if (isRoot) execFileSync('chown', ['-R', 'postgres:postgres', d.work]);
    recoveredPort = await freePort();
    await d.cli(['--env-file', d.envFile, 'pitr-restore', '--pgdata', pgdata, '--to', before, '--start', '--port', String(recoveredPort)], serverUser());

    const count = async (sql: string, port: number) => Number(((await q(sql, port)) as [{ n: string }])[0].n);
    const tickets = 'SELECT count(*)::text AS n FROM support_tickets';
    const paid = `SELECT count(*)::text AS n FROM payments WHERE stripe_id = 'pi_paid_at_16_59'`;
    const [prodTickets, recTickets, recPaid] = [await count(tickets, cluster.port), await count(tickets, recoveredPort), await count(paid, recoveredPort)];
    write(
      `production: ${prodTickets} support tickets; recovered to ${before}: ${recTickets} tickets, and the 16:59 payment ${recPaid === 1 ? 'is there' : 'is MISSING'}\n`,
    );
    if (recTickets === 0 || recPaid !== 1) throw new Error('the recovered cluster does not hold what production held at that moment');

    const pgEnv = { PATH: process.env.PATH, PGHOST: cluster.host, PGUSER: cluster.user, PGPASSWORD: cluster.password, PGDATABASE: d.database };
    const copyBack = `pg_dump -p ${recoveredPort} --data-only -t support_tickets | psql -q -v ON_ERROR_STOP=1 -p ${cluster.port}`;
    write(`$ ${copyBack}\n`);
    await shell(
      `${path.join(cluster.binDir, 'pg_dump')} -p ${recoveredPort} --data-only -t support_tickets | ${path.join(cluster.binDir, 'psql')} -q -v ON_ERROR_STOP=1 -p ${cluster.port}`,
      pgEnv,
    );
    const back = await count(tickets, cluster.port);
    write(`production has its ${back} support tickets back; the payment made since was never lost\n`);
    if (back !== recTickets) throw new Error('the tickets were not copied back');
  } catch (err) {
    write(`the WAL receiver's output:\n${receiverLog}`);
    throw err;
  } finally {
    if (recoveredPort !== undefined && fs.existsSync(path.join(pgdata, 'postmaster.pid'))) {
      const stop = [path.join(cluster.binDir, 'pg_ctl'), '-D', pgdata, '-m', 'fast', '-w', 'stop'];
      const [cmd, ...args] = isRoot ? ['runuser', '-u', 'postgres', '--', ...stop] : stop;
      execFileSync(cmd!, args, { stdio: 'ignore', timeout: 60_000 });
    }
    const gone = new Promise((r) => receiver.once('close', r));
    if (receiver.exitCode === null) receiver.kill('SIGTERM');
    await gone;
  }
}

/** Switches WAL and waits until the segment holding the DELETE is archived on the local target. */
async function archived(d: PitrDemo, q: (sql: string) => Promise<unknown[]>): Promise<void> {
  const [{ name }] = (await q('SELECT pg_walfile_name(pg_current_wal_lsn()) AS name')) as [{ name: string }];
  await q('SELECT pg_switch_wal()');
  const dir = path.join(d.work, 'backups', 'pitr', d.database, 'wal');
  await waitUntil(`${name} archived`, 60_000, () => fs.existsSync(dir) && fs.readdirSync(dir).some((f) => f.startsWith(`${name}-`)));
  d.write(`WAL up to the DELETE is archived (segment ${name}, on both targets)\n`);
}

async function queryOn(cluster: Cluster, port: number, database: string, sql: string): Promise<unknown[]> {
  const { default: pg } = await import('pg');
  const c = new pg.Client({ host: cluster.host, port, user: cluster.user, password: cluster.password, database });
  await c.connect();
  try {
    return (await c.query(sql)).rows as unknown[];
  } finally {
    await c.end();
  }
}
