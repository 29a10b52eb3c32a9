/**
 * `npm run bench [-- --size-mb N --runs N]`: is basement-backup as fast as plain pg_dump, and
 * does its memory stay small and flat as the database grows?
 *
 * It starts a throwaway cluster, builds a database of about BENCH_SIZE_MB (default 500; or
 * --size-mb): pgbench tables for roughly half of it, and a table with text and jsonb columns for
 * the rest. It then times, interleaved and in alternating order, plain `pg_dump -Fc -f FILE`
 * against `basement-backup backup` (the same pg_dump binary, pg_dump's default compression for
 * both, both writing to the same disk, the previous run's files deleted before the next run),
 * and reports the median wall-time ratio and the peak RSS of the basement-backup process. A
 * second, quarter-size database is backed up once first to show that the RSS does not grow with
 * the database.
 *
 * Targets (issue 2): median ratio ≤ 1.05, peak RSS ≤ 120 MB and not growing with database size.
 * A missed target is reported, not an error: the exit status is non-zero only when something
 * broke (a command failed, the cluster would not start, bad arguments).
 *
 * Fairness notes:
 * - One unmeasured pg_dump warms the OS page cache and shared buffers before the measured runs;
 *   then each round runs both commands, pg_dump first in even rounds and basement-backup first in
 *   odd ones, with `sync` before every measured command so neither pays for the other's writes.
 * - Both fsync their output: pg_dump -Fc -f syncs the file unless --no-sync, basement-backup
 *   syncs the file and its directory before the rename. basement-backup's wall time includes
 *   everything `basement-backup backup` does with its default settings, i.e. what a user waits
 *   for: Node start-up, the pre-flight checks, anything it reads besides the dump (such as the
 *   row counts and digests of BACKUP_DIGEST, default "full", when it was written), the
 *   `pg_restore --list` check of the archive, the roles file, the manifest and retention.
 * - basement-backup gets no BACKUP_COMPRESSION, so it passes no --compress and pg_dump uses its
 *   default for -Fc, exactly as the plain run does.
 *
 * Peak RSS: `/proc/<pid>/status` VmHWM (the kernel's high-water mark of the process's resident
 * set) of the Node process is polled every 50 ms until it exits, and the largest value seen is
 * reported. GNU time's %M is NOT used: it reports the ru_maxrss that wait4() returns for its
 * child, which on Linux is the maximum over the child *and every descendant it waited for* — it
 * would report pg_dump's RSS whenever pg_dump's is the larger. (Checked: `/usr/bin/time -f %M`
 * around a 42 MB Node process whose child allocates 400 MB prints 451804 kB.) VmHWM belongs to
 * one process only, so pg_dump and pg_restore, being separate processes, are not counted. The
 * last < 50 ms before exit can escape the poll; VmHWM being a high-water mark, only growth in
 * that final slice could be missed.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Table from 'cli-table3';
import { startCluster, type Cluster } from '../scripts/lib/cluster';

const RATIO_TARGET = 1.05;
const RSS_TARGET_MB = 120;
/** The RSS counts as "not growing" when the full-size peak is within this of the quarter-size peak. */
const RSS_GROWTH_TOLERANCE_MB = 10;
const POLL_MS = 50;
/** Decimal megabytes, like the rest of basement-backup's output (formatBytes); stricter than MiB against the 120 MB target. */
const MB = 1_000_000;
/** Size of pgbench's tables and indexes per unit of scale (-s), measured on PostgreSQL 15. */
const PGBENCH_MB_PER_SCALE = 15.6;

const repoRoot = path.resolve(__dirname, '..', '..');
const cliMain = path.join(repoRoot, 'dist', 'src', 'cli', 'main.js');

interface Options {
  sizeMb: number;
  runs: number;
}

class UsageError extends Error {}

function positiveInt(name: string, value: string, min: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min) throw new UsageError(`${name}: "${value}" is not a whole number ≥ ${min}`);
  return Number(value);
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: { 'size-mb': { type: 'string' }, runs: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write('usage: npm run bench [-- --size-mb N (default $BENCH_SIZE_MB or 500)] [--runs N (default 3, at least 3)]\n');
    process.exit(0);
  }
  const sizeRaw = values['size-mb'] ?? process.env.BENCH_SIZE_MB ?? '500';
  return {
    sizeMb: positiveInt(values['size-mb'] !== undefined ? '--size-mb' : 'BENCH_SIZE_MB', sizeRaw, 40),
    runs: positiveInt('--runs', values.runs ?? '3', 3),
  };
}

// ---------------------------------------------------------------------------------------------
// Processes

interface Measured {
  wallMs: number;
  /** Largest VmHWM seen for the process itself, in bytes (0 when the process ended before the first poll). */
  peakRssBytes: number;
  stdout: string;
  stderr: string;
}

let current: ReturnType<typeof spawn> | undefined;

function readHwm(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined; // gone already
  }
}

/** Runs a command (no shell), timing it from spawn to exit and polling its own peak RSS. */
function measure(cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string }): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    // detached: its own process group, so an interrupted benchmark can stop it and its pg_dump together
    const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    current = child;
    let peak = 0;
    let wallMs = 0;
    const poll = () => {
      if (child.pid === undefined) return;
      const hwm = readHwm(child.pid);
      if (hwm !== undefined && hwm > peak) peak = hwm;
    };
    poll();
    const timer = setInterval(poll, POLL_MS);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.once('error', (e) => {
      clearInterval(timer);
      current = undefined;
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.once('exit', () => {
      wallMs = Number(process.hrtime.bigint() - started) / 1e6;
      clearInterval(timer);
    });
    child.once('close', (code, signal) => {
      clearInterval(timer);
      current = undefined;
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code !== 0) {
        reject(new Error(`${path.basename(cmd)} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${stderr.trim()}\n${stdout.trim()}`));
        return;
      }
      resolve({ wallMs, peakRssBytes: peak, stdout, stderr });
    });
  });
}

function syncDisks(): void {
  spawnSync('sync', { stdio: 'ignore' });
}

// ---------------------------------------------------------------------------------------------
// The database

/** libpq's environment for the cluster: the password travels here, never in argv. */
function libpq(cluster: Cluster, database: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    PGHOST: cluster.host,
    PGPORT: String(cluster.port),
    PGUSER: cluster.user,
    PGPASSWORD: cluster.password,
    PGDATABASE: database,
  };
}

async function databaseSize(cluster: Cluster, database: string): Promise<number> {
  const rows = await cluster.query<{ n: string }>(database, 'SELECT pg_database_size(current_database())::text AS n');
  return Number(rows[0]!.n);
}

const DOCS_TABLE = `
CREATE TABLE bench_docs (
  id bigint PRIMARY KEY,
  created_at timestamptz NOT NULL,
  title text NOT NULL,
  body text NOT NULL,
  doc jsonb NOT NULL
)`;

/** Rows [from, to] of bench_docs: ~600 bytes each, below the TOAST threshold, compressing about like real text. */
function docsInsert(from: number, to: number): string {
  return `
INSERT INTO bench_docs (id, created_at, title, body, doc)
SELECT g,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '17 seconds',
       'Document ' || g || ' about server ' || (g % 977),
       concat_ws(' ', 'Deployment log of', g, md5(g::text), 'status', (ARRAY['ok','failed','pending','rolled back'])[1 + g % 4],
                 md5((g * 3)::text), 'by user', g % 5003, md5((g * 7)::text), 'took', g % 613, 'seconds', md5((g * 11)::text),
                 substr(md5((g * 13)::text), 1, 1 + g % 32)),
       jsonb_build_object(
         'user_id', g % 5003,
         'plan', (ARRAY['basic','pro','business'])[1 + g % 3],
         'tags', jsonb_build_array('t' || (g % 7), 't' || (g % 13), 't' || (g % 31)),
         'score', round(((g % 997) / 7.0)::numeric, 3),
         'active', g % 2 = 0,
         'commit', md5((g * 17)::text),
         'meta', jsonb_build_object('region', 'eu-' || (g % 5), 'attempt', g % 4, 'hash', md5((g * 19)::text))
       )
FROM generate_series(${from}, ${to}) AS g`;
}

interface BuiltDb {
  name: string;
  sizeBytes: number;
  scale: number;
  docsRows: number;
  buildMs: number;
}

/**
 * pgbench tables for about half of `sizeMb`, then bench_docs rows (inserted by two connections
 * at once, one per core) up to the rest, then VACUUM ANALYZE and a CHECKPOINT so that no run pays
 * for hint bits or dirty buffers left by the load. Ordinary logged tables throughout.
 */
async function buildDatabase(cluster: Cluster, name: string, sizeMb: number): Promise<BuiltDb> {
  const t0 = Date.now();
  const target = sizeMb * MB;
  await cluster.createDatabase(name);
  const scale = Math.max(1, Math.round(sizeMb / 2 / PGBENCH_MB_PER_SCALE));
  const pgbench = path.join(cluster.binDir, 'pgbench');
  const r = spawnSync(pgbench, ['-i', '-s', String(scale), '-q', name], { env: libpq(cluster, name), encoding: 'utf8' });
  if (r.error) throw new Error(`cannot run ${pgbench}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`pgbench -i -s ${scale} failed (${r.signal ?? `exit ${r.status}`}):\n${r.stderr.trim()}`);

  await cluster.query(name, DOCS_TABLE);
  const sample = 2_000; // enough to estimate the bytes per row
  await cluster.query(name, docsInsert(1, sample));
  const [{ n: perRowText } = { n: '0' }] = await cluster.query<{ n: string }>(name, `SELECT (pg_total_relation_size('bench_docs') / ${sample}.0)::text AS n`);
  const perRow = Number(perRowText);
  const remaining = Math.max(0, Math.floor((target - (await databaseSize(cluster, name))) / perRow));
  const workers = Math.max(1, Math.min(os.cpus().length, 4));
  const chunk = Math.ceil(remaining / workers);
  const jobs: Promise<unknown>[] = [];
  for (let w = 0; w < workers; w++) {
    const from = sample + 1 + w * chunk;
    const to = Math.min(sample + remaining, from + chunk - 1);
    if (to >= from) jobs.push(cluster.query(name, docsInsert(from, to)));
  }
  await Promise.all(jobs);
  await cluster.query(name, 'VACUUM ANALYZE');
  await cluster.query(name, 'CHECKPOINT');
  return { name, sizeBytes: await databaseSize(cluster, name), scale, docsRows: sample + remaining, buildMs: Date.now() - t0 };
}

// ---------------------------------------------------------------------------------------------
// The two commands

interface Dirs {
  base: string;
  pgDumpOut: string;
  backupDir: string;
  logDir: string;
  work: string;
}

interface RunResult {
  tool: 'pg_dump' | 'basement-backup';
  wallMs: number;
  peakRssBytes: number;
  dumpBytes: number;
}

function emptyDir(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    // keep basement-backup's state directory (.basement-backup: locks and failure state)
    if (e.name.startsWith('.') && e.isDirectory()) continue;
    fs.rmSync(path.join(dir, e.name), { recursive: true, force: true });
  }
}

async function runPgDump(cluster: Cluster, db: string, dirs: Dirs): Promise<RunResult> {
  emptyDir(dirs.pgDumpOut);
  syncDisks();
  const file = path.join(dirs.pgDumpOut, `${db}.dump`);
  const m = await measure(path.join(cluster.binDir, 'pg_dump'), ['-Fc', '-f', file], { env: libpq(cluster, db), cwd: dirs.work });
  const dumpBytes = fs.statSync(file).size;
  emptyDir(dirs.pgDumpOut);
  return { tool: 'pg_dump', wallMs: m.wallMs, peakRssBytes: m.peakRssBytes, dumpBytes };
}

async function runBasementBackup(cluster: Cluster, db: string, dirs: Dirs): Promise<RunResult> {
  emptyDir(dirs.backupDir);
  syncDisks();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dirs.work,
    DB_HOST: cluster.host,
    DB_PORT: String(cluster.port),
    DB_USER: cluster.user,
    DB_PASSWORD: cluster.password,
    DB_NAME: db,
    PG_BIN_DIR: cluster.binDir,
    BACKUP_DIR: dirs.backupDir,
    LOG_DIR: dirs.logDir,
    BACKUP_MIN_FREE_MB: '0',
    BACKUP_RETENTION_MIN_COUNT: '100000',
  };
  // cwd is an empty directory, so no ./.env is picked up.
  const m = await measure(process.execPath, [cliMain, 'backup', '--label', 'bench'], { env, cwd: dirs.work });
  const dumps = fs.readdirSync(dirs.backupDir).filter((n) => n.endsWith('.dump'));
  if (dumps.length !== 1) throw new Error(`expected one .dump file in ${dirs.backupDir} after basement-backup backup, found: ${dumps.join(', ') || 'none'}`);
  const dumpBytes = fs.statSync(path.join(dirs.backupDir, dumps[0]!)).size;
  emptyDir(dirs.backupDir);
  return { tool: 'basement-backup', wallMs: m.wallMs, peakRssBytes: m.peakRssBytes, dumpBytes };
}

interface Round {
  round: number;
  first: RunResult['tool'];
  pgDump: RunResult;
  bb: RunResult;
}

async function runRound(cluster: Cluster, db: string, dirs: Dirs, round: number): Promise<Round> {
  if (round % 2 === 0) {
    const pgDump = await runPgDump(cluster, db, dirs);
    const bb = await runBasementBackup(cluster, db, dirs);
    return { round, first: 'pg_dump', pgDump, bb };
  }
  const bb = await runBasementBackup(cluster, db, dirs);
  const pgDump = await runPgDump(cluster, db, dirs);
  return { round, first: 'basement-backup', pgDump, bb };
}

// ---------------------------------------------------------------------------------------------
// Report

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const mb = (bytes: number, digits = 1) => (bytes / MB).toFixed(digits);
const load = () =>
  os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
const secs = (ms: number) => (ms / 1000).toFixed(2);
const spread = (ms: number[]) => `${secs(median(ms))} s (${secs(Math.min(...ms))}–${secs(Math.max(...ms))})`;
const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

function table(head: string[], rows: (string | number)[][]): string {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r.map(String));
  return t.toString();
}

function say(line = ''): void {
  process.stdout.write(line + '\n');
}

// ---------------------------------------------------------------------------------------------

let cleanupDone = false;
let clusterRef: Cluster | undefined;
let baseDir: string | undefined;

function cleanup(): void {
  if (cleanupDone) return;
  cleanupDone = true;
  if (current?.pid !== undefined && current.exitCode === null) {
    try {
      process.kill(-current.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  clusterRef?.stop();
  if (baseDir) fs.rmSync(baseDir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const opts = parseOptions();
  if (!fs.existsSync(cliMain)) throw new Error(`${cliMain} is missing: run \`npm run build\` (npm run bench does it first)`);

  baseDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bb-bench-'));
  const dirs: Dirs = {
    base: baseDir,
    pgDumpOut: path.join(baseDir, 'pg_dump-out'),
    backupDir: path.join(baseDir, 'backups'),
    logDir: path.join(baseDir, 'logs'),
    work: path.join(baseDir, 'work'),
  };
  for (const d of [dirs.pgDumpOut, dirs.backupDir, dirs.logDir, dirs.work]) fs.mkdirSync(d, { mode: 0o700 });

  say(`basement-backup benchmark: ~${opts.sizeMb} MB database, ${opts.runs} interleaved runs of each command`);
  const cluster = await startCluster();
  clusterRef = cluster;
  const pgDumpVersion = spawnSync(path.join(cluster.binDir, 'pg_dump'), ['--version'], { encoding: 'utf8' }).stdout.trim();
  say('basement-backup runs with its defaults except BACKUP_DIR, LOG_DIR, BACKUP_MIN_FREE_MB=0 and BACKUP_RETENTION_MIN_COUNT=100000.');
  say(`cluster: ${cluster.host}:${cluster.port}, ${pgDumpVersion}, node ${process.version}, ${os.cpus().length} CPUs, output in ${baseDir}`);

  // 1. A quarter-size database, one backup (and one pg_dump for its dump size), to show the RSS is flat.
  const smallMb = Math.max(20, Math.round(opts.sizeMb / 4));
  const small = await buildDatabase(cluster, 'bench_small', smallMb);
  say(
    `built ${small.name}: ${mb(small.sizeBytes)} MB (pg_database_size; target ${smallMb}), pgbench -s ${small.scale} + ${small.docsRows} bench_docs rows, in ${secs(small.buildMs)} s`,
  );
  await runPgDump(cluster, small.name, dirs); // warm-up, not measured
  const smallRound = await runRound(cluster, small.name, dirs, 0);
  await cluster.dropDatabase(small.name);

  // 2. The full-size database, interleaved rounds.
  const big = await buildDatabase(cluster, 'bench', opts.sizeMb);
  say(
    `built ${big.name}: ${mb(big.sizeBytes)} MB (pg_database_size; target ${opts.sizeMb}), pgbench -s ${big.scale} + ${big.docsRows} bench_docs rows, in ${secs(big.buildMs)} s`,
  );
  await runPgDump(cluster, big.name, dirs); // warm-up, not measured
  // Other work on the machine skews both commands; the load average shows whether there was any.
  const loadBefore = load();
  const rounds: Round[] = [];
  for (let i = 0; i < opts.runs; i++) {
    const r = await runRound(cluster, big.name, dirs, i);
    rounds.push(r);
    say(
      `  round ${i + 1}/${opts.runs}: pg_dump ${secs(r.pgDump.wallMs)} s, basement-backup ${secs(r.bb.wallMs)} s (ratio ${(r.bb.wallMs / r.pgDump.wallMs).toFixed(3)}), peak RSS ${mb(r.bb.peakRssBytes)} MB`,
    );
  }
  const loadAfter = load();

  // Report.
  say();
  say(`Runs on ${big.name} (${mb(big.sizeBytes)} MB). Wall time from spawn to exit; RSS = the process's own VmHWM; sizes in MB.`);
  say(
    table(
      ['round', 'first', 'pg_dump s', 'basement-backup s', 'ratio', 'pg_dump file', 'backup file', 'basement-backup peak RSS', 'pg_dump peak RSS'],
      rounds.map((r) => [
        r.round + 1,
        r.first,
        secs(r.pgDump.wallMs),
        secs(r.bb.wallMs),
        (r.bb.wallMs / r.pgDump.wallMs).toFixed(3),
        mb(r.pgDump.dumpBytes, 2),
        mb(r.bb.dumpBytes, 2),
        mb(r.bb.peakRssBytes),
        mb(r.pgDump.peakRssBytes),
      ]),
    ),
  );
  const ratios = rounds.map((r) => r.bb.wallMs / r.pgDump.wallMs);
  const medianRatio = median(ratios);
  const ratioOfMedians = median(rounds.map((r) => r.bb.wallMs)) / median(rounds.map((r) => r.pgDump.wallMs));
  const peakRss = Math.max(...rounds.map((r) => r.bb.peakRssBytes));
  const smallRss = smallRound.bb.peakRssBytes;
  const growth = peakRss - smallRss;
  const flat = growth <= RSS_GROWTH_TOLERANCE_MB * MB;

  say();
  say(`RSS against database size (basement-backup, peak VmHWM of the Node process):`);
  say(
    table(
      ['database', 'pg_database_size', 'dump file', 'runs', 'basement-backup peak RSS', 'pg_dump s', 'basement-backup s'],
      [
        [small.name, mb(small.sizeBytes), mb(smallRound.bb.dumpBytes), 1, mb(smallRss), secs(smallRound.pgDump.wallMs), secs(smallRound.bb.wallMs)],
        [big.name, mb(big.sizeBytes), mb(median(rounds.map((r) => r.bb.dumpBytes))), rounds.length, `${mb(peakRss)} (max)`, '', ''],
      ],
    ),
  );

  say();
  say('Summary:');
  say(
    table(
      ['measure', 'value', 'target', 'result'],
      [
        ['median wall-time ratio, basement-backup / pg_dump (per round)', medianRatio.toFixed(3), `≤ ${RATIO_TARGET}`, verdict(medianRatio <= RATIO_TARGET)],
        ['ratio of median wall times (for reference)', ratioOfMedians.toFixed(3), '', ''],
        ['pg_dump wall time, median (min–max)', spread(rounds.map((r) => r.pgDump.wallMs)), '', ''],
        ['basement-backup wall time, median (min–max)', spread(rounds.map((r) => r.bb.wallMs)), '', ''],
        ['peak RSS of the basement-backup process (max of runs)', `${mb(peakRss)} MB`, `≤ ${RSS_TARGET_MB} MB`, verdict(peakRss <= RSS_TARGET_MB * MB)],
        [
          `peak RSS growth ${mb(small.sizeBytes)} → ${mb(big.sizeBytes)} MB database`,
          `${growth >= 0 ? '+' : ''}${mb(growth)} MB`,
          `≤ +${RSS_GROWTH_TOLERANCE_MB} MB`,
          verdict(flat),
        ],
      ],
    ),
  );
  say(`load average (1/5/15 min) before the measured rounds: ${loadBefore}; after: ${loadAfter} (${os.cpus().length} CPUs)`);
  say(`total benchmark time ${secs(Date.now() - t0)} s`);
}

process.once('SIGINT', () => {
  process.stderr.write('\ninterrupted: cleaning up\n');
  cleanup();
  process.exit(130);
});
process.once('SIGTERM', () => {
  cleanup();
  process.exit(143);
});

main()
  .then(() => {
    cleanup();
    process.exit(0);
  })
  .catch((err: unknown) => {
    cleanup();
    process.stderr.write(`bench: ${err instanceof UsageError ? '' : 'failed: '}${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(err instanceof UsageError ? 64 : 1);
  });
