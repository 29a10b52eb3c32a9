/**
 * npm run demo: the whole thing on a throwaway PostgreSQL cluster, with nothing configured.
 * Creates a small webserver_db shaped like the production one, backs it up with the real CLI,
 * lists it, restores it into a scratch database with zstd and pg_restore, compares row counts,
 * recovers to the second before an accidental DELETE (point-in-time recovery), shows the daemon's
 * status page URL and /healthz's answer, and removes everything again.
 */
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { shellQuote } from '../src/restore/by-hand';
import { S3rver } from './lib/s3rver';
import { startCluster, type Cluster } from './lib/cluster';
import { showStatusPage } from './lib/demo-http';
import { showPointInTimeRecovery } from './lib/demo-pitr';
import { createWebserverDb, rowCounts, WEBSERVER_TABLES } from './lib/seed-db';

const CLI = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');

function step(text: string): void {
  process.stdout.write(`\n\x1b[1m▶ ${text}\x1b[0m\n`);
}

/**
 * Runs the real CLI. Asynchronously: the S3 server the demo runs lives in this process and must
 * keep answering while the CLI uploads.
 */
function run(args: string[], env: NodeJS.ProcessEnv, as: { uid?: number; gid?: number } = {}): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(CLI, args, { env, encoding: 'utf8', timeout: 600_000, ...as }, (err, stdout, stderr) => {
      const status = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ status, stdout, stderr });
    });
  });
}

async function cli(args: string[], env: NodeJS.ProcessEnv, echo = true, as: { uid?: number; gid?: number } = {}): Promise<string> {
  if (echo)
    process.stdout.write(
      `$ basement-backup ${args
        .filter((a, i) => a !== '--env-file' && args[i - 1] !== '--env-file')
        .map((a) => (/^[\w.:/=@%+-]+$/.test(a) ? a : shellQuote(a)))
        .join(' ')}\n`,
    );
  const r = await run(args, env, as);
  if (echo) process.stdout.write(r.stdout);
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    throw new Error(`basement-backup ${args.join(' ')} exited with ${r.status}`);
  }
  return r.stdout;
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'basement-demo-'));
  let cluster: Cluster | undefined;
  let s3: S3rver | undefined;
  try {
    step('Starting a throwaway PostgreSQL cluster');
    cluster = await startCluster();
    process.stdout.write(`PostgreSQL on 127.0.0.1:${cluster.port} (data in ${cluster.dataDir})\n`);

    step('Creating webserver_db with the production tables: ' + WEBSERVER_TABLES.join(', '));
    await createWebserverDb(cluster, 'webserver_db', 200);
    const before = await rowCounts(cluster, 'webserver_db');

    // The same variables the app's .env has; the password reaches pg_dump only through its environment.
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DB_HOST: cluster.host,
      DB_PORT: String(cluster.port),
      DB_USER: cluster.user,
      DB_PASSWORD: cluster.password,
      DB_NAME: 'webserver_db',
      PG_BIN_DIR: cluster.binDir,
      BACKUP_DIR: path.join(work, 'backups'),
      LOG_DIR: path.join(work, 'logs'),
    };

    step('Starting a local S3-compatible server (s3rver) to stand in for DigitalOcean Spaces / AWS S3');
    s3 = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: path.join(work, 's3'), configureBuckets: [{ name: 'offsite', configs: [] }] });
    const { port: s3Port } = await s3.run();
    Object.assign(env, {
      S3_ENDPOINT: `http://127.0.0.1:${s3Port}`,
      S3_BUCKET: 'offsite',
      S3_PREFIX: 'cloudedbasement/',
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      S3_FORCE_PATH_STYLE: 'true',
      S3_RETENTION_DAYS: '90',
    });
    process.stdout.write(`bucket "offsite" at http://127.0.0.1:${s3Port}: every backup now goes to the local disk and the bucket at once\n`);

    step('Taking a backup with the real CLI (what the daemon does at 02:00)');
    await cli(['backup', '--label', 'demo'], env);

    step('The copy in the bucket, and a restore drill from it (what the daemon does at 04:00)');
    await cli(['list', '--target', 's3'], env);
    await cli(['verify', '--target', 's3'], env);

    step('Listing backups');
    await cli(['list'], env);
    const [manifest] = JSON.parse(await cli(['list', '--json'], env, false)) as { file: string; restore_command?: string }[];
    if (!manifest) throw new Error('no backup listed');

    step('Restoring it into a scratch database with the standard tools, as its manifest says');
    await cluster.createDatabase('webserver_db_restored');
    const pgEnv = { ...process.env, PGHOST: cluster.host, PGPORT: String(cluster.port), PGUSER: cluster.user, PGPASSWORD: cluster.password };
    process.stdout.write(`manifest's restore_command: ${manifest.restore_command}\n`);
    const pgRestore = path.join(cluster.binDir, 'pg_restore');
    const command = manifest.file.endsWith('.zst')
      ? `zstd -dc ${shellQuote(manifest.file)} | ${shellQuote(pgRestore)} --exit-on-error --no-owner -d webserver_db_restored`
      : `${shellQuote(pgRestore)} --exit-on-error --no-owner -d webserver_db_restored ${shellQuote(manifest.file)}`;
    process.stdout.write(`$ ${command}\n`);
    execFileSync('bash', ['-o', 'pipefail', '-c', command], { env: pgEnv, stdio: 'inherit' });
    const after = await rowCounts(cluster, 'webserver_db_restored');

    step('Comparing row counts');
    let same = true;
    for (const t of WEBSERVER_TABLES) {
      const ok = before[t] === after[t];
      same &&= ok;
      process.stdout.write(`  ${ok ? '✅' : '❌'} ${t.padEnd(16)} original ${String(before[t]).padStart(5)}  restored ${String(after[t]).padStart(5)}\n`);
    }
    step('Before a migration: a gate that exits 0 only when a fresh backup is stored and its restore drill passed');
    await cli(['backup', '--label', 'pre-migration', '--keep', '30d', '--verify'], env);
    await cli(['list'], env);

    step('A failing backup (wrong password) is refused loudly and touches nothing');
    process.stdout.write('$ DB_PASSWORD=wrong basement-backup backup\n');
    const bad = await run(['backup'], { ...env, DB_PASSWORD: 'wrong-password' });
    process.stdout.write(
      bad.stderr
        .split('\n')
        .filter((l) => l.startsWith('basement-backup:') || l.startsWith('  fix:'))
        .join('\n') + '\n',
    );
    process.stdout.write(`exit code ${bad.status}; backups still listed: ${(JSON.parse(await cli(['list', '--json'], env, false)) as unknown[]).length}\n`);
    if (bad.status === 0) throw new Error('a backup with a wrong password succeeded');

    step('Point-in-time recovery: back to the second before a mistake (README scenario 1)');
    const envFile = path.join(work, '.env');
    const fileVars = Object.entries(env).filter(([k]) => k !== 'PATH' && k !== 'HOME');
    fs.writeFileSync(envFile, fileVars.map(([k, v]) => `${k}=${v}`).join('\n') + '\n', { mode: 0o600 });
    await showPointInTimeRecovery({
      cluster,
      envFile,
      work,
      database: 'webserver_db',
      cliPath: CLI,
      write: (t) => process.stdout.write(t),
      cli: (args, o = {}) => cli(args, { PATH: process.env.PATH, HOME: work }, o.echo ?? true, { uid: o.uid, gid: o.gid }),
    });

    step("The daemon's status page and /healthz (BACKUP_HTTP_PORT): green after the good backups");
    await showStatusPage(CLI, env, (t) => process.stdout.write(t));

    step('backup.log');
    process.stdout.write(fs.readFileSync(path.join(work, 'logs', 'backup.log'), 'utf8'));
    if (!same) throw new Error('row counts differ after restore');
    process.stdout.write('\nDemo complete: the backup restores with identical row counts. Cleaning up.\n');
  } finally {
    await s3?.close().catch(() => undefined);
    cluster?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

// Piped into `head`: once the reader is gone, writes fail (EPIPE); the demo still runs to its end
// and removes what it started instead of dying with a cluster and a WAL receiver left behind.
process.stdout.on('error', () => undefined);

// Ctrl-C: leave nothing running (the cluster's own exit hook then stops and removes it).
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.stderr.write(`\ndemo interrupted (${sig}): cleaning up\n`);
    process.exit(130);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
  process.exit(1);
});
